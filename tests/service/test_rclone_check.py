"""`check` with BACKUP_STORAGE_URL=rclone:<remote>:<path>: the remote's reachability and each thing the
service does there (list, write, read, delete), with S3's exit statuses. Real rclone (the `local` backend,
`rclone serve webdav|sftp` on loopback), real PostgreSQL, the real CLI."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from tests.processes import run_cli
from tests.s3support import every_file, remote_files

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)

CRON = {
    "ADMIN_TOKEN": "",
    "ADMIN_PASSWORD": "",
    "BACKUP_RETENTION": "last=3",
    "BACKUP_SCHEDULE": "",
    "BACKUP_AGE_RECIPIENTS": "",
    "BACKUP_NAME": "shop",
}


def test_a_writable_remote_passes_and_nothing_is_left_behind(tmp_path, rich_db):
    folder = tmp_path / "remote"
    env = CRON | {
        "DATABASE_URL": rich_db,
        "BACKUP_STORAGE_URL": f"rclone:loc:{folder}",
        "RCLONE_CONFIG_LOC_TYPE": "local",
    }
    assert run_cli("upload", env=env).returncode == 0
    stored = remote_files(folder)
    everything = every_file(folder)  # with the upload's `_history/` events, which remote_files leaves out
    done = run_cli("check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("checking as: upload")
    assert (
        f"storage: ok — rclone:loc:{folder} at local remote 'loc' (RCLONE_CONFIG_LOC_*): "
        f"1 stored backup, newest {stored[0]}"
    ) in done.stdout
    for permission in ("list", "write", "read", "delete"):
        assert f"storage {permission}: ok\n" in done.stdout
    assert "retention: last=3" in done.stdout
    assert f"history: ok — rclone:loc:{folder}/_history/ takes events; newest event" in done.stdout
    assert "alerts: warning — stored backups are on, but no alert channel is set" in done.stdout
    heard = run_cli("check", env={**env, "HEARTBEAT_URL": "https://hc-ping.example/0f4d6c8e"})
    assert heard.returncode == 0 and "alerts:" not in heard.stdout, heard.stdout
    assert "result: ok — this process can store backups" in done.stdout
    assert remote_files(folder) == stored  # the probe object and its companion are gone
    assert every_file(folder) == everything  # and the history's test file (`_history/check-….tmp`)


@pytest.mark.parametrize("kind", ["webdav", "sftp"])
def test_a_served_remote_passes_and_its_secret_is_not_printed(served, rich_db, kind):
    folder, start = served
    env = CRON | start(kind=kind) | {"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": "rclone:dav:backups"}
    done = run_cli("check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"storage: ok — rclone:dav:backups at {kind} remote 'dav'" in done.stdout
    assert "storage write: ok" in done.stdout and "storage delete: ok" in done.stdout
    assert remote_files(folder / "backups") == []
    if kind == "sftp":
        assert env["RCLONE_CONFIG_DAV_PASS"] not in done.stdout + done.stderr


def test_a_remote_refusing_writes_is_not_ready_and_says_so(served, rich_db):
    folder, start = served
    env = CRON | start(read_only=True) | {"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": "rclone:dav:backups"}
    done = run_cli("check", env=env)
    assert done.returncode == 1, done.stdout
    assert "storage: problem — rclone:dav:backups at webdav remote 'dav'" in done.stdout
    assert "storage list: ok" in done.stdout
    write = next(line for line in done.stdout.splitlines() if line.startswith("storage write:"))
    assert write.startswith(
        ("storage write: failed — rclone rcat failed", "storage write: denied — rclone rcat failed")
    )
    assert "storage read:" not in done.stdout  # nothing was written, so nothing is read or deleted
    assert "result: NOT ready — this process cannot store backups" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert remote_files(folder) == []


@pytest.mark.parametrize("listening", [False, True], ids=["unreachable", "stalling"])
def test_a_remote_that_is_down_or_stalls_is_unreachable_in_bounded_time(tmp_path, rich_db, listening):
    """Unreachable: a port nobody listens on. Stalling: a listening socket that never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        if listening:
            silent.listen(16)
        env = CRON | {
            "DATABASE_URL": rich_db,
            "BACKUP_STORAGE_URL": "rclone:dav:backups",
            "HOME": str(tmp_path),
            "RCLONE_CONFIG_DAV_TYPE": "webdav",
            "RCLONE_CONFIG_DAV_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/",
        }
        began = time.monotonic()
        done = run_cli("check", env=env)
        took = time.monotonic() - began
    assert done.returncode == 1, done.stdout
    assert "storage: unreachable — rclone:dav:backups at webdav remote 'dav'" in done.stdout
    assert "rclone lsjson failed" in done.stdout
    assert "result: NOT ready" in done.stdout
    assert took < 60  # `check`'s bounds: 5 s to connect, 10 s without progress, one retry


def test_a_remote_that_is_not_configured_says_which_variables_to_set(tmp_path, rich_db):
    env = CRON | {
        "DATABASE_URL": rich_db,
        "BACKUP_STORAGE_URL": "rclone:gdrive:backups",
        "HOME": str(tmp_path),
        "RCLONE_CONFIG": "",
    }
    done = run_cli("check", env=env)
    assert done.returncode == 1, done.stdout
    assert (
        "storage: unreachable — rclone:gdrive:backups at remote 'gdrive', which is not configured: set "
        "RCLONE_CONFIG_GDRIVE_TYPE" in done.stdout
    )


def test_serve_with_an_rclone_remote_and_a_schedule_is_ready(tmp_path, rich_db):
    env = CRON | {
        "DATABASE_URL": rich_db,
        "BACKUP_STORAGE_URL": f"rclone:loc:{tmp_path / 'r'}",
        "RCLONE_CONFIG_LOC_TYPE": "local",
        "ADMIN_TOKEN": "t" * 24,
        "BACKUP_SCHEDULE": "0 3 * * *",
    }
    done = run_cli("check", env=env)
    assert done.stdout.startswith("checking as: serve")
    assert done.returncode == 0, done.stdout
    assert "schedule: 0 3 * * * (UTC): `serve` stores a backup on the remote at those times" in done.stdout
    assert "storage write: ok" in done.stdout


def test_encryption_with_an_rclone_remote_is_checked_as_with_s3(tmp_path, rich_db, age_keys):
    env = CRON | {
        "DATABASE_URL": rich_db,
        "BACKUP_STORAGE_URL": f"rclone:loc:{tmp_path / 'r'}",
        "RCLONE_CONFIG_LOC_TYPE": "local",
        "BACKUP_AGE_RECIPIENTS": age_keys["age_public"],
    }
    done = run_cli("check", env=env)
    assert done.returncode == 0, done.stdout
    assert "encryption: on — stored backups are age-encrypted to 1 recipient" in done.stdout
    assert "storage write: ok" in done.stdout
