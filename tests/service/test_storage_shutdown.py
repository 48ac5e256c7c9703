"""A redeploy (SIGTERM to `serve`) during a stored backup: the run stops within the grace period
whatever it was doing, its upload is aborted, and the failure is logged and delivered (webhook)
before the process exits. Real gunicorn, PostgreSQL, moto's S3 server and an HTTP receiver.

The backups here are started with `POST /api/v1/stored`: the scheduler's runs go through the very
same code (StoredBackups._take) and would make each test wait for the next minute.
"""

from __future__ import annotations

import json
import os
import signal
import time


from tests.processes import wait_until
from tests.s3support import incomplete_uploads, object_keys, s3_env

GRACE_S = 10
HOOK = "/services/T0AAAA/B0BBBB/hooksecretXYZ123"


def posted(hook) -> list[dict]:
    return [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]


def dump_waits_for_a_lock(pg_cluster) -> bool:
    with pg_cluster.connect() as db:
        return bool(
            db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'backup_svc%' AND wait_event_type = 'Lock'"
            ).fetchall()
        )


def sigterm_and_time(service) -> float:
    started = time.monotonic()
    os.killpg(service.proc.pid, signal.SIGTERM)
    service.proc.wait(timeout=GRACE_S + 20)
    return time.monotonic() - started


def assert_reported_and_clean(service, hook, client, bucket, took: float) -> None:
    log = service.log()
    assert took < GRACE_S, (took, log[-3000:])
    assert incomplete_uploads(client, bucket) == [] and object_keys(client, bucket) == [], log[-3000:]
    assert "failed, the upload was aborted: stopped: the service is shutting down" in log, log[-3000:]
    failures = [p for p in posted(hook) if p["event"] == "backup"]
    assert [(p["outcome"], p["error"]) for p in failures] == [("failed", "stopped: the service is shutting down")], log[
        -3000:
    ]


def test_sigterm_while_pg_dump_waits_for_a_lock(
    s3, moto_s3, rich_db, pg_cluster, locked_cache, receiver, start_service
):
    """Issue 21, fault 4: pg_dump waiting on a migration's lock writes nothing, so a stop flag checked
    only when bytes arrive was never seen: the worker was killed, the upload stayed, nobody was told. (The
    upload is now created with the first part, so the stop must be seen and reported with none to abort.)"""
    client, bucket = s3
    hook = receiver()
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/db",
        BACKUP_LOCK_TIMEOUT="300",
        GRACEFUL_TIMEOUT=str(GRACE_S),
        NOTIFY_WEBHOOK_URL=hook.url + HOOK,
        **s3_env(moto_s3.endpoint),
    )
    assert service.request("POST", "/api/v1/stored", service.auth()).status == 202
    # no upload exists yet: it is created with the first part, and pg_dump has written nothing
    assert wait_until(lambda: dump_waits_for_a_lock(pg_cluster), 30), service.log()[-2000:]
    assert incomplete_uploads(client, bucket) == []

    took = sigterm_and_time(service)

    assert_reported_and_clean(service, hook, client, bucket, took)


def test_sigterm_while_a_part_is_on_a_slow_link(s3, moto_s3, fault_proxy, big_db, receiver, start_service):
    """The writer waits for part 1, which the storage takes 60 s to accept (a proxy holds it)."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(60)
    hook = receiver()
    service = start_service(
        DATABASE_URL=big_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/db",
        GRACEFUL_TIMEOUT=str(GRACE_S),
        NOTIFY_WEBHOOK_URL=hook.url + HOOK,
        **s3_env(proxy.endpoint),
    )
    assert service.request("POST", "/api/v1/stored", service.auth()).status == 202
    assert wait_until(lambda: any(m == "PUT" and "partNumber=1" in t for m, t, _ in proxy.log), 60), service.log()[
        -2000:
    ]
    time.sleep(1)  # part 1 is on the wire, the writer waits for it

    took = sigterm_and_time(service)

    assert_reported_and_clean(service, hook, client, bucket, took)
