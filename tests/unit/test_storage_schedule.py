"""BACKUP_SCHEDULE: cron parsing, next times, and a scheduler that never replays missed runs."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.storage.schedule import CronSchedule, Scheduler, parse_schedule


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "expression, after, expected",
    [
        ("0 3 * * *", utc(2026, 11, 28, 19, 0), utc(2026, 11, 29, 3, 0)),
        ("0 3 * * *", utc(2026, 11, 29, 3, 0), utc(2026, 11, 30, 3, 0)),  # strictly after
        ("*/15 * * * *", utc(2026, 11, 28, 19, 7, 30), utc(2026, 11, 28, 19, 15)),
        ("30 2 * * 1", utc(2026, 11, 28, 19, 0), utc(2026, 11, 30, 2, 30)),  # Monday
        ("0 0 1 * *", utc(2026, 12, 15), utc(2027, 1, 1)),
        ("* * * * *", utc(2026, 11, 28, 19, 0, 59, 999999), utc(2026, 11, 28, 19, 1)),
    ],
)
def test_next_time(expression, after, expected):
    assert CronSchedule(expression).next_after(after) == expected


def test_other_time_zones_are_read_as_the_same_instant():
    eastern = timezone(timedelta(hours=-5))
    assert CronSchedule("0 3 * * *").next_after(datetime(2026, 11, 28, 20, 0, tzinfo=eastern)) == utc(2026, 11, 29, 3)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("0 3 * *", "must have 5 fields"),
        ("0 0 3 * * *", "must have 5 fields"),
        ("@daily", "must have 5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("x * * * *", "not a valid cron expression"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression, message):
    with pytest.raises(ValueError, match=message):
        parse_schedule(expression)


def test_empty_means_no_schedule():
    assert parse_schedule("") is None and parse_schedule("  ") is None


class FakeClock:
    """A clock the test moves; the scheduler re-reads it every 10 ms (poll_s)."""

    def __init__(self, now: datetime):
        self.now = now
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, delta: timedelta) -> None:
        with self.lock:
            self.now += delta


def wait_for(predicate, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_missed_runs_are_skipped_not_replayed():
    clock = FakeClock(utc(2026, 11, 28, 19, 0, 30))
    ran: list[datetime] = []
    scheduler = Scheduler(CronSchedule("* * * * *"), lambda: ran.append(clock()), clock=clock, poll_s=0.01).start()
    try:
        assert wait_for(lambda: scheduler.next_run == utc(2026, 11, 28, 19, 1))
        clock.advance(timedelta(hours=3))  # the machine slept through 180 scheduled minutes
        assert wait_for(lambda: len(ran) == 1)
        time.sleep(0.2)
        assert len(ran) == 1  # one run, not a burst of 180
        assert wait_for(lambda: scheduler.next_run == utc(2026, 11, 28, 22, 1))
        clock.advance(timedelta(minutes=1))
        assert wait_for(lambda: len(ran) == 2)
    finally:
        scheduler.stop()


def test_a_failing_job_does_not_stop_the_schedule():
    clock = FakeClock(utc(2026, 11, 28, 19, 0, 30))
    calls = []

    def job():
        calls.append(1)
        raise RuntimeError("storage down")

    scheduler = Scheduler(CronSchedule("* * * * *"), job, clock=clock, poll_s=0.01).start()
    try:
        for n in (1, 2):
            assert wait_for(
                lambda: scheduler.next_run is not None and scheduler.runs == n - 1 and scheduler.next_run > clock()
            )
            clock.advance(timedelta(minutes=1))
            assert wait_for(lambda: len(calls) == n)
    finally:
        scheduler.stop()
