"""Notifications and drills of stored backups, as a user runs them: `upload`, `drill`, `notify-test`
against a real PostgreSQL, moto's S3 server, aiosmtpd and HTTP receivers, all on loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.config import Settings
from backup_svc.notify.stored import StalenessWatch, StoredSetup, reporter_for
from backup_svc.pg.localcluster import free_port
from tests import receivers
from tests.processes import run_cli
from tests.s3support import cluster_identity, corrupt_in_place, object_keys, owned, s3_env, seed_backup, stored_metadata

PING, HOOK = receivers.PING, receivers.HOOK
RICH_ROWS, RICH_TABLES = 2905, 5


def env_for(moto_s3, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(moto_s3.endpoint), **extra}


def posted(hook) -> list[dict]:
    return [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]


def scratch_databases(pg_cluster) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'backup_svc_drill_%'")]


def stored_keys(client, bucket: str) -> list[str]:
    return [k for k in object_keys(client, bucket) if k.startswith("backups/rich_backup_")]


def test_upload_notifies_drills_and_records_row_counts(s3, moto_s3, rich_db, pg_cluster, receiver):
    client, bucket = s3
    hook, monitor = receiver(), receiver()
    env = env_for(
        moto_s3,
        bucket,
        rich_db,
        **receivers.every_alert(hook, monitor, pg_cluster.url("postgres")),
    )

    done = run_cli("upload", env=env)

    assert done.returncode == 0, done.stderr
    (key,) = stored_keys(client, bucket)
    meta = stored_metadata(client, bucket, key)
    assert (meta["rows"], meta["tables"]) == (str(RICH_ROWS), str(RICH_TABLES))
    assert json.loads(meta["row-counts"])["Mixed Case"] == {"Order Items": 500}
    assert "restore drill ok in " in done.stderr
    assert f"{RICH_TABLES} tables, {RICH_ROWS} rows match (dump-time metadata)" in done.stderr

    backup, drill = posted(hook)
    assert (backup["event"], backup["outcome"], backup["name"]) == ("backup", "ok", key.split("/")[-1])
    assert (
        backup["sha256"] == meta["sha256"]
        and backup["bytes"] == client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    )
    assert (drill["event"], drill["outcome"]) == ("drill", "ok")
    assert (drill["details"]["rows"], drill["details"]["tables"]) == (RICH_ROWS, RICH_TABLES)
    assert drill["details"]["seconds"] > 0
    assert [p for m, p, _, _ in monitor.requests] == [PING]  # one plain ping: the backup; drills do not ping
    assert scratch_databases(pg_cluster) == []
    assert pg_cluster.password not in done.stderr + json.dumps(posted(hook))


def test_drill_of_a_bit_flipped_stored_object_fails(s3, moto_s3, rich_db, pg_cluster, receiver):
    client, bucket = s3
    assert run_cli("upload", env=env_for(moto_s3, bucket, rich_db)).returncode == 0
    (key,) = stored_keys(client, bucket)
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x04
    corrupt_in_place(client, bucket, key, bytes(body))
    hook = receiver()

    done = run_cli(
        "drill",
        env=env_for(
            moto_s3, bucket, rich_db, NOTIFY_WEBHOOK_URL=hook.url + HOOK, RESTORE_DRILL_URL=pg_cluster.url("postgres")
        ),
    )

    assert done.returncode == 1
    assert f"drilling the newest stored backup, {key.split('/')[-1]}" in done.stderr
    assert "drill failed after" in done.stderr and "the backup is damaged: corrupt gzip data" in done.stderr
    [event] = posted(hook)
    assert (event["event"], event["outcome"]) == ("drill", "failed")
    assert event["error"].startswith("the backup is damaged")
    assert scratch_databases(pg_cluster) == []


def test_drill_names_a_stored_object(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    assert run_cli("upload", env=env_for(moto_s3, bucket, rich_db)).returncode == 0
    (key,) = stored_keys(client, bucket)

    done = run_cli(
        "drill",
        f"s3://{bucket}/{key}",
        env={**s3_env(moto_s3.endpoint), "DATABASE_URL": rich_db, "RESTORE_DRILL_URL": pg_cluster.url("postgres")},
    )

    assert done.returncode == 0, done.stderr
    assert f"{RICH_TABLES} tables, {RICH_ROWS} rows, counts match (dump-time metadata)" in done.stdout


def test_failed_upload_is_told_and_pings_fail(s3, moto_s3, pg_cluster, receiver):
    client, bucket = s3
    hook, monitor = receiver(), receiver()
    wrong = "wrong-Password-1234"
    env = env_for(
        moto_s3,
        bucket,
        pg_cluster.url("rich", password=wrong),
        NOTIFY_WEBHOOK_URL=hook.url + HOOK,
        HEARTBEAT_URL=monitor.url + PING,
    )

    done = run_cli("upload", env=env)

    assert done.returncode == 1
    [event] = posted(hook)
    assert (event["event"], event["outcome"], event["bytes"]) == ("backup", "failed", None)
    assert "password" in event["error"] and wrong not in json.dumps(event)
    assert [p for m, p, _, _ in monitor.requests] == [PING + "/fail"]
    assert stored_keys(client, bucket) == []


def test_unreachable_webhook_does_not_change_the_upload(s3, moto_s3, rich_db):
    client, bucket = s3
    env = env_for(
        moto_s3, bucket, rich_db, NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}{HOOK}", NOTIFY_ON="always"
    )

    started = time.monotonic()
    done = run_cli("upload", env=env)

    assert done.returncode == 0, done.stderr
    assert len(stored_keys(client, bucket)) == 1
    assert "notify: webhook gave up on the backup/ok event after 3 attempts" in done.stderr
    assert "hooksecret" not in done.stderr
    assert time.monotonic() - started < 60


def test_notify_test_sends_one_of_each(receiver):
    hook, monitor = receiver(), receiver()
    with receivers.smtp_server() as (smtp, mailbox):
        done = run_cli(
            "notify-test",
            env={
                "DATABASE_URL": "postgresql://app:pw@db.internal/shop",
                "NOTIFY_WEBHOOK_URL": hook.url + HOOK,
                "HEARTBEAT_URL": monitor.url + PING,
                "SMTP_URL": f"smtp://notifier:{receivers.SECRET}@127.0.0.1:{smtp.port}",
                "NOTIFY_EMAIL_TO": "ops@example.com",
                "NOTIFY_EMAIL_FROM": "backups@example.com",
            },
        )

    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["email", "webhook", "heartbeat"]
    assert len(mailbox.messages) == 1
    assert mailbox.parsed()["Subject"].startswith("[backup_svc] shop: test notification at ")
    assert [p["event"] for p in posted(hook)] == ["test"]
    assert [p for m, p, _, _ in monitor.requests] == [PING]
    assert receivers.SECRET not in done.stdout + done.stderr


def test_notify_test_without_channels_says_what_to_set():
    done = run_cli("notify-test", env={"DATABASE_URL": "postgresql://app:pw@db.internal/shop"})
    assert done.returncode == 2
    assert "no notification channel is configured: set SMTP_URL" in done.stderr


def test_stale_backups_raise_one_alarm(s3, moto_s3, rich_db, pg_cluster, receiver):
    """A seeded backup three days old, a daily schedule: the watch alarms once, then stays quiet."""
    client, bucket = s3
    seed_backup(
        client, bucket, "backups/rich_backup_20260101_030000.sql.gz", owner=owned(cluster_identity(pg_cluster), "rich")
    )
    hook = receiver()
    settings = Settings.from_env(
        env_for(moto_s3, bucket, rich_db, BACKUP_SCHEDULE="0 3 * * *", NOTIFY_WEBHOOK_URL=hook.url + HOOK),
        require_auth=False,
    )
    setup = StoredSetup(settings.dump, settings.storage, settings.notify, settings.encryption)
    reporter = reporter_for(setup)
    watch = StalenessWatch(reporter, setup, client=client)

    first, second = watch.check_once(), watch.check_once()

    assert first.stale and second.stale
    assert first.newest == datetime(2026, 1, 1, 3, 0, tzinfo=timezone.utc)
    assert first.interval == timedelta(days=1)
    assert reporter.notifier.flush(10)
    [alarm] = posted(hook)
    assert (alarm["event"], alarm["outcome"]) == ("stale", "failed")
    assert reporter.status()["staleness"]["stale"] is True


def test_refused_drill_url_stops_the_service_at_start(rich_db):
    done = run_cli("check", env={"DATABASE_URL": rich_db, "RESTORE_DRILL_URL": rich_db, "ADMIN_TOKEN": "t" * 20})
    assert done.returncode == 1
    assert "configuration: RESTORE_DRILL_URL points at the backed-up database" in done.stdout


def test_the_docs_local_smtp_example_runs_as_written(tmp_path):
    """docs/notifications.md's throwaway-SMTP block, in bash, as written, but on a free port (tests
    may run beside another aiosmtpd on its default 8025)."""
    import os
    import re
    import subprocess
    import sys

    from pathlib import Path

    from tests import REPO

    text = (REPO / "docs" / "notifications.md").read_text()
    [block] = re.findall(r"```sh\n(\.venv/bin/python -m aiosmtpd[^`]*)```", text)
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "NOTIFY_", "HEARTBEAT_", "DATABASE_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    # From the checkout's folder, as the guide says: `.venv/bin/…` is the test's own virtualenv.
    assert Path(sys.executable).parent == REPO / ".venv" / "bin" or (REPO / ".venv" / "bin" / "python").exists()
    done = subprocess.run(
        ["bash", "-c", block.replace("8025", port)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^email +smtp://127\.0\.0\.1:\d+ \(plain\): sent \(1 attempt", done.stdout, re.M), done.stdout
    assert "Subject: [backup_svc] backup_svc: test notification at " in done.stdout


def test_serve_reports_stale_backups_then_a_scheduled_backup_and_its_drill(
    s3, moto_s3, rich_db, pg_cluster, receiver, start_service
):
    """`serve` with `* * * * *` and a seeded backup from January: the staleness watch alarms at start,
    the scheduled backup of the next minute is told and drilled, the heartbeat pinged; the three
    events, in that order, within the 100 s the test waits."""
    from tests.processes import wait_until

    client, bucket = s3
    seed_backup(
        client,
        bucket,
        "scheduled/rich_backup_20260101_030000.sql.gz",
        owner=owned(cluster_identity(pg_cluster), "rich"),
    )
    hook, monitor = receiver(), receiver()
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/scheduled",
        BACKUP_SCHEDULE="* * * * *",
        **receivers.every_alert(hook, monitor, pg_cluster.url("postgres")),
        **s3_env(moto_s3.endpoint),
    )

    assert wait_until(lambda: len(posted(hook)) >= 3, 100, interval=0.5), service.log()[-3000:]
    events = [(p["event"], p["outcome"]) for p in posted(hook)]
    assert events == [("stale", "failed"), ("backup", "ok"), ("drill", "ok")], service.log()[-3000:]
    assert posted(hook)[2]["details"]["rows"] == RICH_ROWS
    assert [p for m, p, _, _ in monitor.requests] == [PING]
    assert "notify: restore drill of rich_backup_" in service.log()
    assert pg_cluster.password not in service.log()


def test_check_lists_the_channels_without_secrets(rich_db, pg_cluster):
    done = run_cli(
        "check",
        env={
            "DATABASE_URL": rich_db,
            "ADMIN_TOKEN": "t" * 20,
            "SMTP_URL": f"smtps://ops:{receivers.SECRET}@smtp.example.com",
            "NOTIFY_EMAIL_TO": "ops@example.com",
            "NOTIFY_EMAIL_FROM": "backups@example.com",
            "NOTIFY_WEBHOOK_URL": "https://hooks.slack.com" + HOOK,
            "RESTORE_DRILL_URL": pg_cluster.url("postgres"),
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "notifications: email: smtps://smtp.example.com:465 (tls) from backups@example.com to ops@example.com"
        in done.stdout
    )
    assert "notifications: webhook: https://hooks.slack.com/…" in done.stdout
    assert f"notifications: restore drills: scratch databases on 127.0.0.1:{pg_cluster.port}" in done.stdout
    assert receivers.SECRET not in done.stdout and "hooksecret" not in done.stdout
    assert pg_cluster.password not in done.stdout


@pytest.mark.parametrize("command", ["upload", "serve"])
def test_a_settings_error_pings_the_heartbeats_fail_url(command, moto_s3, rich_db, receiver):
    """Issue 21, weaker finding: a service that cannot start for its settings (exit 2) sent no /fail
    ping, so the monitor only noticed when the pings stopped."""
    monitor = receiver()
    done = run_cli(
        command,
        env={
            "DATABASE_URL": rich_db,
            "ADMIN_TOKEN": "t" * 20,
            "PORT": str(free_port()),
            "BACKUP_STORAGE_URL": "s3://bkt/x",
            "BACKUP_RETENTION": "forever",
            "HEARTBEAT_URL": monitor.url + PING,
            **s3_env(moto_s3.endpoint),
        },
    )
    assert done.returncode == 2, done.stderr
    assert "BACKUP_RETENTION has 'forever'" in done.stderr
    assert [p for m, p, _, _ in monitor.requests] == [PING + "/fail"]
