"""BACKUP_SCHEDULE inside `serve`: the worker takes a stored backup on time, in a dump slot of its own."""

from __future__ import annotations

from tests.processes import wait_until
from tests.s3support import incomplete_uploads, object_keys, s3_env, stored_metadata


def scheduled_upload_begun(start_service, database_url: str, client, bucket: str, proxy, **more):
    """`serve` storing under s3://bucket/scheduled every minute through `proxy`; returned once the first
    scheduled upload has begun (an incomplete multipart upload in the bucket, within 75 s)."""
    service = start_service(
        DATABASE_URL=database_url,
        BACKUP_STORAGE_URL=f"s3://{bucket}/scheduled",
        BACKUP_SCHEDULE="* * * * *",
        **more,
        **s3_env(proxy.endpoint),
    )
    assert wait_until(lambda: incomplete_uploads(client, bucket), 75, interval=0.2), (
        f"no scheduled upload started within 75 s: {service.log()[-2000:]}"
    )
    return service


def test_the_schedule_fires_and_shares_the_slot_with_downloads(s3, moto_s3, fault_proxy, rich_db, start_service):
    """`* * * * *`: within a minute (bounded at 75 s) a stored backup runs. Its parts go through a proxy
    that slows them, so a download asked for meanwhile finds the one slot (BACKUP_MAX_CONCURRENT=1) taken."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(4.0)
    service = scheduled_upload_begun(start_service, rich_db, client, bucket, proxy, BACKUP_MAX_CONCURRENT="1")
    busy = service.request("GET", "/api/v1/backup", service.auth())
    assert busy.status == 429

    def scheduled_entries():
        entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
        return [e for e in entries if e["actor"] == "schedule"]

    assert wait_until(scheduled_entries, 30), service.log()[-2000:]
    entry = scheduled_entries()[0]
    (key,) = object_keys(client, bucket)
    assert key.startswith("scheduled/rich_backup_") and key.endswith(".sql.gz")
    head = client.head_object(Bucket=bucket, Key=key)
    assert entry["outcome"] == "ok" and entry["sha256"] == stored_metadata(client, bucket, key)["sha256"]
    assert entry["bytes"] == head["ContentLength"]
    assert incomplete_uploads(client, bucket) == []
    assert "next stored backup at" in service.log()


def test_a_bad_schedule_refuses_to_start(moto_s3, rich_db, tmp_path):
    from backup_svc.pg.localcluster import free_port
    from tests.processes import run_cli

    done = run_cli(
        "serve",
        env={
            "DATABASE_URL": rich_db,
            "ADMIN_TOKEN": "t" * 20,
            "BACKUP_STORAGE_URL": "s3://bkt/x",
            "BACKUP_SCHEDULE": "every day",
            "PORT": str(free_port()),
            **s3_env(moto_s3.endpoint),
        },
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == "backup_svc: BACKUP_SCHEDULE must have 5 fields (minute hour day month weekday, "
        "UTC), got 2: 'every day'"
    )


def test_stopping_the_service_mid_upload_aborts_it(s3, moto_s3, fault_proxy, big_db, start_service):
    """SIGTERM to `serve` (a redeploy) while a scheduled upload runs: the upload is aborted, nothing stored."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(2.0)
    service = scheduled_upload_begun(start_service, big_db, client, bucket, proxy)
    service.stop()
    assert service.proc.returncode == 0, service.log()[-2000:]
    assert incomplete_uploads(client, bucket) == []
    assert object_keys(client, bucket) == []
    assert (
        "scheduled stored backup failed, the upload was aborted: stopped: the service is shutting down" in service.log()
    )
