"""Issue 21, finding 7: a worker killed outright (SIGKILL — what the out-of-memory killer sends) in the
middle of a scheduled stored backup. It runs no code, so before, nobody was told and the incomplete
upload stayed a day. Now the next worker the gunicorn master starts reports the run once, on every
channel, records it in the durable history and aborts its upload at once.

Real gunicorn (master + worker), PostgreSQL, moto's S3 server, aiosmtpd and HTTP receivers. The fault
proxy in front of moto only holds each part for a while (a slow link), so that the kill lands while
part 1 is on the wire; the SIGKILL is a real one, sent to the real worker process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone

from tests import receivers
from tests.s3support import cluster_identity, history_keys, incomplete_uploads, object_keys, owned, s3_env, seed_backup
from tests.processes import wait_until

HOOK = "/services/T0AAAA/B0BBBB/hooksecretXYZ123"
PING = "/ping/5f1e0c2a"


def backup_events(hook) -> list[dict]:
    return [
        p
        for p in (json.loads(body) for method, _, _, body in hook.requests if method == "POST")
        if p["event"] == "backup"
    ]


def stale_events(hook) -> list[dict]:
    return [
        p
        for p in (json.loads(body) for method, _, _, body in hook.requests if method == "POST")
        if p["event"] == "stale"
    ]


def failed_runs_in_history(client, bucket: str) -> list[dict]:
    """The stored-run events of the durable history (in the bucket) whose outcome is failed."""
    bodies = [
        json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in history_keys(client, bucket)
    ]
    return [b["data"] for b in bodies if b.get("type") == "stored-run" and b["data"].get("outcome") == "failed"]


def test_a_worker_killed_mid_scheduled_upload_is_reported_once_and_its_upload_aborted(
    s3, moto_s3, fault_proxy, big_db, pg_cluster, receiver, start_service
):
    client, bucket = s3
    # a fresh backup of this service: waiting for the schedule's minute must not raise the staleness alarm,
    # whose mail would be a second one
    fresh = f"db/big_backup_{datetime.now(timezone.utc):%Y%m%d_%H%M%S}.sql.gz"
    seed_backup(client, bucket, fresh, owner=owned(cluster_identity(pg_cluster), "big"))
    proxy, _ = fault_proxy
    proxy.slow_parts(60)  # part 1 stays on the wire for a minute: the run is mid-upload when killed
    hook, monitor = receiver(), receiver()
    with receivers.smtp_server() as (smtp, mailbox):
        service = start_service(
            DATABASE_URL=big_db,
            BACKUP_STORAGE_URL=f"s3://{bucket}/db",
            BACKUP_SCHEDULE="* * * * *",
            NOTIFY_WEBHOOK_URL=hook.url + HOOK,
            HEARTBEAT_URL=monitor.url + PING,
            SMTP_URL=f"smtp://notifier:{receivers.SECRET}@127.0.0.1:{smtp.port}",
            NOTIFY_EMAIL_TO="ops@example.com",
            NOTIFY_EMAIL_FROM="backups@example.com",
            **s3_env(proxy.endpoint),
        )
        # the schedule's next minute, then pg_dump's first 16 MiB: part 1 goes out
        assert wait_until(lambda: any(m == "PUT" and "partNumber=1" in t for m, t, _ in proxy.log), 100), service.log()[
            -2000:
        ]
        assert len(incomplete_uploads(client, bucket)) == 1
        [worker] = service.worker_pids()

        os.kill(worker, signal.SIGKILL)

        assert wait_until(
            lambda: backup_events(hook) and mailbox.messages and not incomplete_uploads(client, bucket), 40
        ), service.log()[-3000:]
        time.sleep(3)  # anything sent twice would have arrived by now
        log = service.log()
        assert f"Worker (pid:{worker}) was sent SIGKILL" in log
        [new_worker] = service.worker_pids()
        assert new_worker != worker

        [event] = backup_events(hook)
        assert event["outcome"] == "failed"
        assert f"worker process (pid {worker}) running it was killed" in event["error"], event
        assert event["error"].endswith("its incomplete upload was aborted")
        mails = [mailbox.parsed(i) for i in range(len(mailbox.messages))]
        [mail] = [m for m in mails if "backup FAILED" in m["Subject"]]
        assert "out-of-memory" in mail.get_body().get_content()
        # Besides: the staleness alarm's rule "the last scheduled run failed" fires once, as after any failed
        # scheduled run (notify/staleness.py) — a second, different alarm, not the failure sent twice.
        assert [m["Subject"] for m in mails if m is not mail and "STALE" not in m["Subject"]] == []
        assert len(mails) <= 2 and len([p for p in stale_events(hook)]) <= 1
        assert [path for method, path, _, _ in monitor.requests] == [PING + "/fail"]
        assert incomplete_uploads(client, bucket) == [] and object_keys(client, bucket) == [fresh]
        assert "scheduled stored backup" in log and "was killed before it finished" in log
        # the durable history has it, as the dashboard's last failure
        assert wait_until(lambda: failed_runs_in_history(client, bucket), 20), log[-2000:]
        [run] = failed_runs_in_history(client, bucket)
        assert run["trigger"] == "schedule" and run["name"].startswith("big_backup_") and "killed" in run["error"]
        status = service.request("GET", "/api/v1/stored", service.auth()).json()
        assert "killed" in (status.get("last_failure") or {}).get("error", ""), status
