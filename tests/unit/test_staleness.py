"""The staleness rule: older than 1.5 schedule intervals; one alarm per stale episode."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.notify.staleness import StaleWatch, is_stale, schedule_interval

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@pytest.mark.parametrize("age, stale", [
    (timedelta(hours=1), False),
    (DAY, False),
    (DAY * 1.5, False),
    (DAY * 1.5 + timedelta(seconds=1), True),
    (DAY * 4, True),
])
def test_rule(age, stale):
    assert is_stale(T0, T0 + age, DAY) is stale


def test_no_backup_yet_counts_from_start_up():
    assert not is_stale(None, T0 + DAY, DAY, up_since=T0)
    assert is_stale(None, T0 + DAY * 2, DAY, up_since=T0)


def test_one_alarm_per_episode():
    watch = StaleWatch("shop", up_since=T0)
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
    state, _ = StaleWatch("shop", up_since=T0).check(T0, T0 + DAY * 2, DAY)
    assert state.as_dict() == {"stale": True, "newest_ok": "2026-11-28T03:00:00Z",
                               "alarm_at": "2026-11-29T15:00:00Z", "interval_s": 86400}
    fresh, _ = StaleWatch("shop", up_since=T0).check(T0, T0 + DAY, DAY)
    assert fresh.as_dict()["stale"] is False and fresh.as_dict()["alarm_at"] == "2026-11-29T15:00:00Z"
    none_yet, _ = StaleWatch("shop", up_since=T0).check(None, T0 + DAY, DAY)
    assert none_yet.as_dict()["alarm_at"] == "2026-11-29T15:00:00Z"  # 1.5 intervals after the start


def every(minutes: int, *, weekdays_only: bool = False):
    """A next_after like CronSchedule's, for a schedule every `minutes` (optionally Monday to Friday)."""
    def next_after(when: datetime) -> datetime:
        nxt = when.replace(second=0, microsecond=0) + timedelta(minutes=minutes - when.minute % minutes)
        while weekdays_only and nxt.weekday() >= 5:
            nxt += timedelta(minutes=minutes)
        return nxt
    return next_after


@pytest.mark.parametrize("minutes, weekdays_only, interval", [
    (60, False, timedelta(hours=1)),
    (24 * 60, False, DAY),
    (24 * 60, True, DAY * 3),  # Friday to Monday
])
def test_schedule_interval(minutes, weekdays_only, interval):
    assert schedule_interval(every(minutes, weekdays_only=weekdays_only), T0) == interval


@pytest.mark.parametrize("schedule,cadence", [("* * * * *", 15.0), ("*/10 * * * *", 150.0), ("0 3 * * *", 300.0),
                                               (None, 300.0)])
def test_the_watch_checks_often_enough_for_the_schedule(schedule, cadence):
    """Every 5 minutes, or a quarter of a shorter interval: a `* * * * *` alarm comes within 1.5-1.75 minutes."""
    from backup_svc.config import Settings
    from backup_svc.notify.outcome import StalenessWatch

    env = {"DATABASE_URL": "postgresql://u:p@db.internal/shop", "BACKUP_STORAGE_URL": "s3://bkt/x"}
    if schedule:
        env["BACKUP_SCHEDULE"] = schedule
    assert StalenessWatch.cadence_s(Settings.from_env(env, require_auth=False)) == cadence
