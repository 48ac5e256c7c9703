"""Stored backups in words: the schedule ("next: 03:00 UTC, in 5 h"), the retention, the newest backup's
age and whether it is older than the schedule leads one to expect. Pure functions of their arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .retention import RetentionPolicy
from .schedule import CronSchedule

# The newest backup is overdue when older than this many of the schedule's intervals: one missed run
# is noticed, the run in progress (or a few minutes' delay behind a download) is not.
STALE_INTERVALS = 1.5


def duration_words(seconds: float) -> str:
    """`45 s`, `12 min`, `5 h`, `5 h 20 min`, `3 days`, `3 days 4 h` — rounded down, as people say it."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h" + (f" {m} min" if m and h < 10 else "")
    d, h = divmod(s // 3600, 24)
    return f"{d} day{'s' if d != 1 else ''}" + (f" {h} h" if h and d < 3 else "")


def retention_words(policy: RetentionPolicy | None) -> str:
    """What BACKUP_RETENTION keeps, as a sentence."""
    if policy is None:
        return "Every stored backup is kept (BACKUP_RETENTION is not set); nothing is ever deleted."
    parts = []
    if policy.last is not None:
        parts.append(f"the {policy.last} newest")
    periods = [
        (getattr(policy, rule), unit)
        for rule, unit in (("daily", "day"), ("weekly", "week"), ("monthly", "month"))
        if getattr(policy, rule) is not None
    ]
    if periods:
        counted = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in periods]
        listed = counted[0] if len(counted) == 1 else ", ".join(counted[:-1]) + " and " + counted[-1]
        parts.append(f"the newest of each of the last {listed} that have a backup")
    return "After each successful stored backup, older ones are deleted except " + " and ".join(parts) + f" ({policy})."


def schedule_interval(schedule: CronSchedule, now: datetime) -> timedelta:
    """The gap between the two latest scheduled times up to `now`: what the newest backup's age is
    measured against (a weekday schedule's Monday gap is three days, Tuesday's one)."""
    from cronsim import CronSim

    earlier = CronSim(schedule.expression, now.replace(microsecond=0) + timedelta(seconds=1), reverse=True)
    latest, before = next(earlier), next(earlier)
    return latest - before


def is_overdue(
    newest: datetime | None, now: datetime, interval: timedelta, *, up_since: datetime | None = None
) -> bool:
    """The one staleness rule (the dashboard's warning and the notification's alarm both use it):
    `newest` is older than STALE_INTERVALS `interval`s; with no backup at all, once `up_since` is
    that old (None: at once)."""
    reference = newest if newest is not None else up_since
    return reference is None or now - reference > interval * STALE_INTERVALS


def is_stale(
    newest: datetime | None,
    now: datetime,
    interval: timedelta,
    *,
    last_scheduled_failed: bool,
    up_since: datetime | None = None,
) -> bool:
    """Stale: the last scheduled run (this service's or a cron service's `upload`) failed, or the newest
    backup is overdue. `freshness` (the dashboard) and the alarm (notify/staleness.py) both mean this."""
    return last_scheduled_failed or is_overdue(newest, now, interval, up_since=up_since)


@dataclass(frozen=True)
class Freshness:
    """The newest stored backup's age, and a warning when it is overdue or the last scheduled run failed."""

    age_s: float | None
    warning: str | None

    @property
    def stale(self) -> bool:
        return self.warning is not None


def freshness(
    newest: datetime | None,
    now: datetime,
    schedule: CronSchedule | None,
    last_scheduled_failed: bool,
    *,
    up_since: datetime | None = None,
) -> Freshness:
    """Judge the newest backup (None: there is none) against the schedule and the last scheduled run.

    Overdue means older than STALE_INTERVALS schedule intervals; with no backup at all, once the
    service (`up_since`) has run that long, so a fresh setup is not a warning before its first run.
    """
    age = (now - newest).total_seconds() if newest is not None else None
    problems = []
    if last_scheduled_failed:
        problems.append("the last scheduled backup failed")
    if schedule is not None:
        interval = schedule_interval(schedule, now)
        if is_overdue(newest, now, interval, up_since=up_since):
            problems.append(
                f"the newest backup is {duration_words(age)} old, but the schedule runs every "
                f"{duration_words(interval.total_seconds())}"
                if newest is not None
                else "there is no stored backup yet, although the schedule should have made one"
            )
    if not problems:
        return Freshness(age, None)
    text = "; ".join(problems)
    return Freshness(age, text[0].upper() + text[1:] + ".")


def next_run_words(next_run: datetime, now: datetime) -> str:
    """`next: 03:00 UTC, in 5 h` (the date too when it is not today)."""
    when = f"{next_run:%H:%M} UTC" if next_run.date() == now.date() else f"{next_run:%a %d %b %H:%M} UTC"
    return f"next: {when}, in {duration_words((next_run - now).total_seconds())}"
