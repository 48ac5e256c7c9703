"""Notifications and restore drills of backups on an rclone remote, as a cron service runs them: `upload`
(webhook, heartbeat, the drill after it) and `drill` reading from the remote. Real rclone (`rclone serve
webdav` on loopback and the `local` backend), real PostgreSQL, real HTTP receivers, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from tests import receivers
from tests.processes import run_cli
from tests.s3support import remote_files

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)

PING, HOOK = receivers.PING, receivers.HOOK
RICH_ROWS, RICH_TABLES = 2905, 5


def posted(hook) -> list[dict]:
    return [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]


def scratch_databases(pg_cluster) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'backup_svc_drill_%'")]


def cron_env(remote: dict, db_url: str, **more: str) -> dict[str, str]:
    return {
        **remote,
        "DATABASE_URL": db_url,
        "BACKUP_NAME": "rich",
        "BACKUP_STORAGE_URL": "rclone:dav:backups",
        "BACKUP_RETENTION": "",
        "BACKUP_AGE_RECIPIENTS": "",
        "ADMIN_TOKEN": "",
        "ADMIN_PASSWORD": "",
        **more,
    }


def local_remote_with_drills(folder, database_url: str, pg_cluster) -> dict[str, str]:
    """`upload`'s variables for an rclone remote of type local at `folder`, drilling on pg_cluster."""
    return cron_env(
        {"RCLONE_CONFIG_DAV_TYPE": "local"},
        database_url,
        BACKUP_STORAGE_URL=f"rclone:dav:{folder}",
        RESTORE_DRILL_URL=pg_cluster.url("postgres"),
    )


def test_upload_to_a_remote_notifies_and_drills_from_it(served, rich_db, pg_cluster, receiver):
    folder, start = served
    hook, monitor = receiver(), receiver()
    env = cron_env(
        start(),
        rich_db,
        **receivers.every_alert(hook, monitor, pg_cluster.url("postgres")),
    )

    done = run_cli("upload", env=env)

    assert done.returncode == 0, done.stderr
    [name] = [n for n in os.listdir(folder / "backups") if n.endswith(".sql.gz")]
    recorded = (folder / "backups" / f"{name}.sha256").read_text().split()[0]
    # the counts the upload recorded in the ownership record, checked against the restored tables
    assert f"{RICH_TABLES} tables, {RICH_ROWS} rows match (dump-time metadata)" in done.stderr
    backup, drill = posted(hook)
    assert (backup["event"], backup["outcome"], backup["name"]) == ("backup", "ok", name)
    assert backup["sha256"] == recorded and backup["bytes"] == (folder / "backups" / name).stat().st_size
    assert (drill["event"], drill["outcome"]) == ("drill", "ok")
    assert (drill["details"]["rows"], drill["details"]["tables"]) == (RICH_ROWS, RICH_TABLES)
    assert [p for m, p, _, _ in monitor.requests] == [PING]
    assert scratch_databases(pg_cluster) == []
    assert pg_cluster.password not in done.stderr + json.dumps(posted(hook))


def test_a_failed_upload_to_a_remote_is_reported(served, rich_db, receiver):
    folder, start = served
    hook, monitor = receiver(), receiver()
    env = cron_env(start(read_only=True), rich_db, NOTIFY_WEBHOOK_URL=hook.url + HOOK, HEARTBEAT_URL=monitor.url + PING)

    done = run_cli("upload", env=env)

    assert done.returncode == 1
    [event] = posted(hook)
    assert (event["event"], event["outcome"]) == ("backup", "failed")
    assert "rclone rcat failed" in event["error"]
    assert [p for m, p, _, _ in monitor.requests] == [PING + "/fail"]
    assert remote_files(folder) == []


def test_a_misconfigured_remote_upload_pings_the_heartbeat_fail_url(tmp_path, rich_db, receiver):
    monitor = receiver()
    env = cron_env(
        {"RCLONE_CONFIG_DAV_TYPE": "local"},
        rich_db,
        BACKUP_STORAGE_URL=f"rclone:dav:{tmp_path / 'r'}",
        BACKUP_RETENTION="keep everything",
        HEARTBEAT_URL=monitor.url + PING,
    )
    done = run_cli("upload", env=env)
    assert done.returncode == 2
    assert [p for m, p, _, _ in monitor.requests] == [PING + "/fail"]


def test_drill_reads_the_newest_backup_or_a_named_one_from_the_remote(tmp_path, rich_db, pg_cluster, receiver):
    folder = tmp_path / "remote"
    env = local_remote_with_drills(folder, rich_db, pg_cluster)
    assert run_cli("upload", env=env).returncode == 0
    time.sleep(1.1)  # backup names carry the second
    assert run_cli("upload", env=env).returncode == 0
    older, name = sorted(n for n in os.listdir(folder) if n.endswith(".sql.gz"))

    newest = run_cli("drill", env=env)
    assert newest.returncode == 0, newest.stderr
    assert f"drilling the newest stored backup, {name}" in newest.stderr
    assert f"drill ok: {name} restored into a scratch database" in newest.stdout
    assert f"{RICH_TABLES} tables, {RICH_ROWS} rows, counts match" in newest.stdout

    named = run_cli(
        "drill", f"rclone:dav:{folder}/{older}", env={**env, "BACKUP_STORAGE_URL": ""}
    )  # no storage configured: the URL says where; the older backup, so that "the newest" would not pass
    assert named.returncode == 0, named.stderr
    assert f"drill ok: {older} restored into a scratch database" in named.stdout, named.stdout
    assert scratch_databases(pg_cluster) == []


def test_drill_of_a_bit_flipped_backup_on_the_remote_fails(tmp_path, rich_db, pg_cluster, receiver):
    folder = tmp_path / "remote"
    hook = receiver()
    env = local_remote_with_drills(folder, rich_db, pg_cluster)
    assert run_cli("upload", env=env).returncode == 0
    [name] = [n for n in os.listdir(folder) if n.endswith(".sql.gz")]
    body = bytearray((folder / name).read_bytes())
    body[len(body) // 2] ^= 0x04  # rot on the remote: the companion records still name the old bytes
    (folder / name).write_bytes(bytes(body))

    done = run_cli("drill", env={**env, "NOTIFY_WEBHOOK_URL": hook.url + HOOK})

    assert done.returncode == 1
    assert "drill failed after" in done.stderr and "the backup is damaged" in done.stderr, done.stderr
    [event] = posted(hook)
    assert (event["event"], event["outcome"]) == ("drill", "failed")
    assert scratch_databases(pg_cluster) == []
