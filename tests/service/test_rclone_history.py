"""The durable history on an rclone remote: `upload` writes its run, audit entry and outcome under
`<path>/_history/YYYY/MM/DD/` beside the backups (as in a bucket), `history [--check]` reads them back,
`prune` applies BACKUP_HISTORY_DAYS, `check` says where it is. Real rclone (`rclone serve webdav` on
loopback, the `local` backend), real PostgreSQL, the real CLI."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.processes import run_cli
from tests.s3support import every_file

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)


def cron_env(remote: dict, db_url: str, url: str, **more: str) -> dict[str, str]:
    return {
        **remote,
        "DATABASE_URL": db_url,
        "BACKUP_NAME": "rich",
        "BACKUP_STORAGE_URL": url,
        "BACKUP_RETENTION": "",
        "BACKUP_AGE_RECIPIENTS": "",
        "ADMIN_TOKEN": "",
        "ADMIN_PASSWORD": "",
        **more,
    }


def test_upload_writes_its_history_to_the_remote_and_history_reads_it(served, rich_db):
    folder, start = served
    env = cron_env(start(), rich_db, "rclone:dav:backups")
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    [name] = [n for n in os.listdir(folder / "backups") if n.endswith(".sql.gz")]
    events = every_file(folder / "backups" / "_history")
    assert len(events) == 3 and all(e.startswith(name[12:16] + "/") and e.endswith(".json") for e in events), events

    shown = run_cli("history", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3 and all(name in line for line in lines)
    assert any(" stored-run " in line and " ok " in line for line in lines)
    assert any(" stored-backup " in line for line in lines)
    assert "3 event(s) from rclone:dav:backups/_history/, newest first" in shown.stderr

    checked = run_cli("history", "--check", env=env)
    assert checked.returncode == 0 and "history check: ok — 3 events" in checked.stdout, checked.stdout

    check = run_cli("check", env=env)
    assert "history: ok — rclone:dav:backups/_history/ takes events; newest event" in check.stdout, check.stdout
    assert len(every_file(folder / "backups" / "_history")) == 3  # check's test file is gone again


def test_an_edited_event_on_the_remote_is_found(tmp_path, rich_db):
    folder = tmp_path / "remote"
    env = cron_env({"RCLONE_CONFIG_LOC_TYPE": "local"}, rich_db, f"rclone:loc:{folder}")
    assert run_cli("upload", env=env).returncode == 0
    first = folder / "_history" / every_file(folder / "_history")[0]
    first.write_bytes(first.read_bytes().replace(b'"ok"', b'"OK"', 1))
    checked = run_cli("history", "--check", env=env)
    assert checked.returncode == 1, checked.stdout


def test_prune_deletes_only_history_events_older_than_the_days(tmp_path, rich_db):
    folder = tmp_path / "remote"
    env = cron_env({"RCLONE_CONFIG_LOC_TYPE": "local"}, rich_db, f"rclone:loc:{folder}", BACKUP_HISTORY_DAYS="30")
    assert run_cli("upload", env=env).returncode == 0
    today = every_file(folder / "_history")
    old_day = folder / "_history" / "2020" / "01" / "02"
    old_day.mkdir(parents=True)
    old_name = "20200102T030405000Z" + today[0].rsplit("/", 1)[1][19:]  # an event's name, five years old
    shutil.copy(folder / "_history" / today[0], old_day / old_name)
    backups = sorted(n for n in os.listdir(folder) if not n.startswith("_"))

    dry = run_cli("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 event(s) older than 30 days" in dry.stderr
    assert (old_day / old_name).exists()

    done = run_cli("prune", env=env)
    assert done.returncode == 0, done.stderr
    assert not (old_day / old_name).exists()
    assert every_file(folder / "_history") == today
    assert (
        sorted(n for n in os.listdir(folder) if not n.startswith("_")) == backups
    )  # history retention never touches backups

    shutil.copy(folder / "_history" / today[0], old_day / old_name)
    assert run_cli("upload", env=env).returncode == 0  # an upload applies BACKUP_HISTORY_DAYS too
    assert not (old_day / old_name).exists()
