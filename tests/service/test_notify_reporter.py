"""The Reporter wires outcomes to channels: a failed backup is told, a good one is drilled in the
background (real PostgreSQL, real webhook receiver) and the dashboard learns "last proven restorable"."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone


from backup_svc.pg.conninfo import parse_database_url
from backup_svc.notify.common import Event
from backup_svc.notify.delivery import Notifier, RetryPolicy
from backup_svc.notify.drill import run_drill
from backup_svc.notify.reporter import Reporter
from backup_svc.notify.settings import NotifySettings

from tests.processes import wait_until

FAST = RetryPolicy(attempts=2, backoff_s=0.1, attempt_timeout_s=2, deadline_s=4)


def reporter_for(hook, pg_cluster, **env) -> Reporter:
    settings = NotifySettings.from_env(
        {"NOTIFY_WEBHOOK_URL": f"{hook.url}/hook", "RESTORE_DRILL_URL": pg_cluster.url("postgres"), **env}
    )
    return Reporter(settings, "rich", notifier=Notifier(settings, policy=FAST))


def posted(hook) -> list[dict]:
    return [json.loads(body) for _, _, _, body in hook.requests]


def test_failed_backup_is_told_and_not_drilled(receiver, pg_cluster):
    hook = receiver()
    reporter = reporter_for(hook, pg_cluster)
    drills = []

    started = time.monotonic()
    reporter.backup_finished(
        Event(kind="backup", outcome="failed", database="rich", error="pg_dump exited 1"),
        drill=lambda: drills.append(1),
    )
    assert time.monotonic() - started < 0.1
    assert reporter.notifier.flush(5)

    assert [(p["event"], p["outcome"], p["error"]) for p in posted(hook)] == [("backup", "failed", "pg_dump exited 1")]
    assert drills == [] and reporter.status()["last_proven_restorable"] is None


def test_good_backup_is_drilled_in_the_background(receiver, pg_cluster, rich_db, backup):
    hook = receiver()
    reporter = reporter_for(hook, pg_cluster, NOTIFY_ON="always")

    def job():
        return run_drill(
            str(backup),
            os.path.basename(backup),
            reporter.settings.drill,
            source=parse_database_url(rich_db),
            bin_dirs=[pg_cluster.bin_dir],
        )

    good = Event(kind="backup", outcome="ok", database="rich", name="rich.sql.gz", bytes=backup.stat().st_size)

    started = time.monotonic()
    reporter.backup_finished(good, drill=job)
    assert time.monotonic() - started < 0.5  # the drill does not hold up the caller
    assert reporter.wait_for_drill(60) and reporter.notifier.flush(10)

    kinds = [(p["event"], p["outcome"]) for p in posted(hook)]
    assert kinds == [("backup", "ok"), ("drill", "ok")]
    drill = posted(hook)[1]
    assert drill["details"]["rows"] == 2905 and drill["details"]["tables"] == 5
    assert drill["text"].startswith("Restore drill of rich ok at ")
    proven = reporter.status()["last_proven_restorable"]
    assert proven["name"] == "rich.sql.gz" and proven["outcome"] == "ok"


def test_stale_alarm_once_through_the_reporter(receiver, pg_cluster):
    hook = receiver()
    reporter = reporter_for(hook, pg_cluster)
    newest = datetime(2026, 11, 20, tzinfo=timezone.utc)
    for minute in range(5):
        state = reporter.check_staleness(
            newest, timedelta(days=1), when=datetime(2026, 11, 28, tzinfo=timezone.utc) + timedelta(minutes=minute)
        )
        assert state.stale
    assert reporter.notifier.flush(5)
    assert wait_until(lambda: len(hook.requests) == 1, 2)
    assert [p["event"] for p in posted(hook)] == ["stale"]
    assert reporter.status()["staleness"]["stale"] is True
