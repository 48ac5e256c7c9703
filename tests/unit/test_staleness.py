"""The staleness rule: older than 1.5 schedule intervals; one alarm per stale episode; the dashboard and the
alarm agree (one rule, storage/status.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from types import SimpleNamespace

from backup_svc.notify.stored import StalenessWatch, StoredSetup, check_staleness
from backup_svc.notify.reporter import Reporter
from backup_svc.notify.settings import NotifySettings
from backup_svc.notify.staleness import StalenessAlarm
from backup_svc.storage.schedule import CronSchedule
from backup_svc.storage.status import freshness, is_overdue

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    "age, stale",
    [
        (timedelta(hours=1), False),
        (DAY, False),
        (DAY * 1.5, False),
        (DAY * 1.5 + timedelta(seconds=1), True),
        (DAY * 4, True),
    ],
)
def test_rule(age, stale):
    assert is_overdue(T0, T0 + age, DAY) is stale


def test_no_backup_yet_counts_from_start_up():
    assert not is_overdue(None, T0 + DAY, DAY, up_since=T0)
    assert is_overdue(None, T0 + DAY * 2, DAY, up_since=T0)


def test_one_alarm_per_episode():
    watch = StalenessAlarm("shop", up_since=T0)
    newest = T0
    alarms = []
    # checked every minute for three days; a fresh backup arrives on day 4, then it goes stale again
    for minute in range(0, 3 * 24 * 60, 1):
        state, event = watch.check(newest, T0 + timedelta(minutes=minute), DAY)
        if event:
            alarms.append((minute, event))
    assert [m for m, _ in alarms] == [36 * 60 + 1]
    event = alarms[0][1]
    assert (event.kind, event.outcome, event.database) == ("stale", "failed", "shop")
    assert "Backups of shop are stale" in event.headline()

    newest = T0 + DAY * 3
    state, event = watch.check(newest, newest + timedelta(minutes=1), DAY)
    assert not state.stale and event is None
    state, event = watch.check(newest, newest + DAY * 2, DAY)
    assert state.stale and event is not None
    assert watch.check(newest, newest + DAY * 2 + timedelta(minutes=1), DAY)[1] is None


def test_state_for_the_api():
    state, _ = StalenessAlarm("shop", up_since=T0).check(T0, T0 + DAY * 2, DAY)
    assert state.as_dict() == {
        "stale": True,
        "newest_ok": "2026-11-28T03:00:00Z",
        "alarm_at": "2026-11-29T15:00:00Z",
        "interval_s": 86400,
        "last_failed": None,
    }
    fresh, _ = StalenessAlarm("shop", up_since=T0).check(T0, T0 + DAY, DAY)
    assert fresh.as_dict()["stale"] is False and fresh.as_dict()["alarm_at"] == "2026-11-29T15:00:00Z"
    none_yet, _ = StalenessAlarm("shop", up_since=T0).check(None, T0 + DAY, DAY)
    assert none_yet.as_dict()["alarm_at"] == "2026-11-29T15:00:00Z"  # 1.5 intervals after the start


WEEKDAYS = CronSchedule("0 3 * * 1-5")
MONDAY_3AM = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)
TUESDAY_3AM = MONDAY_3AM + DAY
FRIDAY_3AM = MONDAY_3AM - DAY * 3


def _alarm_says_stale(newest: datetime, when: datetime) -> bool:
    """What the notification side decides, through the same call the StalenessWatch makes."""
    reporter = Reporter(NotifySettings(), "shop", up_since=when - DAY * 30)
    setup = StoredSetup(dump=None, storage=SimpleNamespace(schedule=WEEKDAYS, watched_schedule=WEEKDAYS), notify=None)
    return check_staleness(reporter, setup, newest, when).stale


def _dashboard_says_stale(newest: datetime, when: datetime) -> bool:
    return freshness(newest, when, WEEKDAYS, False, up_since=when - DAY * 30).stale


@pytest.mark.parametrize(
    "newest, when, stale",
    [
        # Tuesday: the interval is Monday→Tuesday, one day. Monday's backup is stale 36 h after it, not 4.5 days.
        (MONDAY_3AM, MONDAY_3AM + timedelta(hours=36), False),
        (MONDAY_3AM, MONDAY_3AM + timedelta(hours=36, minutes=1), True),
        (TUESDAY_3AM, TUESDAY_3AM + timedelta(hours=13), False),
        # Monday: the interval is Friday→Monday, three days; Friday's backup is fresh over the weekend.
        (FRIDAY_3AM, MONDAY_3AM + timedelta(hours=7), False),
        (FRIDAY_3AM, TUESDAY_3AM + timedelta(minutes=1), True),  # Tuesday's run is due: a day's interval again
    ],
)
def test_a_weekday_schedule_is_judged_the_same_by_the_dashboard_and_the_alarm(newest, when, stale):
    assert _dashboard_says_stale(newest, when) is stale
    assert _alarm_says_stale(newest, when) is stale


def test_a_failed_scheduled_run_makes_backups_stale_however_fresh_the_newest_is():
    """The history says the last scheduled run (this service's or a cron service's) failed: one alarm, saying why."""
    watch = StalenessAlarm("shop", up_since=T0)
    state, alarm = watch.check(T0, T0 + timedelta(hours=1), DAY, last_failed="pg_dump: connection refused")
    assert state.stale and state.as_dict()["last_failed"] == "pg_dump: connection refused"
    assert alarm is not None and "the last scheduled backup failed: pg_dump: connection refused" == alarm.error
    assert "failing" in alarm.headline() and "connection refused" in alarm.reason()
    assert watch.check(T0, T0 + timedelta(hours=2), DAY, last_failed="again")[1] is None  # one per episode
    assert not watch.check(T0 + timedelta(hours=3), T0 + timedelta(hours=3), DAY)[0].stale  # a good run ends it


@pytest.mark.parametrize(
    "schedule,cadence", [("* * * * *", 15.0), ("*/10 * * * *", 150.0), ("0 3 * * *", 300.0), (None, 300.0)]
)
def test_the_watch_checks_often_enough_for_the_schedule(schedule, cadence):
    """Every 5 minutes, or a quarter of a shorter interval: a `* * * * *` alarm comes within 1.5-1.75 minutes."""
    storage = SimpleNamespace(watched_schedule=CronSchedule(schedule) if schedule else None)
    assert StalenessWatch.cadence_s(StoredSetup(dump=None, storage=storage, notify=None)) == cadence


def test_a_new_run_recorded_at_the_same_time_as_the_last_one_is_still_checked():
    """The watch checks again when the history shows a stored run it has not seen; a failed cron run
    recorded at the very time of the good one before it is such a run (it used to be keyed on the time)."""
    from backup_svc.history.event import UPLOAD_TRIGGER
    from backup_svc.history.hooks import record_run
    from backup_svc.history.trail import History

    history = History("upload")
    watch = StalenessWatch.__new__(StalenessWatch)  # no database or bucket: only the new-run rule is tried
    watch.history, watch._newest_run, checks = history, None, []
    watch.check_once = lambda: checks.append(1)
    record_run(history, trigger=UPLOAD_TRIGGER, outcome="ok", started=1_796_000_000.0, finished=1_796_000_000.5)
    watch.check_after_new_run()
    watch.check_after_new_run()  # nothing new: no second check
    record_run(
        history,
        trigger=UPLOAD_TRIGGER,
        outcome="failed",
        started=1_796_000_000.0,
        finished=1_796_000_000.5,
        error="refused",
    )
    watch.check_after_new_run()
    assert len(checks) == 2
