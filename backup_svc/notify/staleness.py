"""The staleness alarm: scheduled backups that stop are noticed here, without any outside service.

Stale means: a schedule is configured and the newest successful stored backup is older than 1.5
schedule intervals (or there is none and the service has been up that long). One "backups are
stale" event per stale episode: the episode ends when a fresh backup appears.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from backup_svc.notify.common import FAILED, STALE, Event, iso

# Half an interval of slack: a backup that runs long or a scheduler tick that comes late is not an alarm.
STALE_FACTOR = 1.5
# Runs looked at to find the schedule's interval: enough to see a whole week of a weekday schedule.
INTERVAL_SAMPLES = 10


def schedule_interval(next_after: Callable[[datetime], datetime], now: datetime) -> timedelta:
    """The longest gap between the schedule's next runs (`next_after` is CronSchedule.next_after).

    The longest, not the next: for `0 3 * * 1-5` a Friday backup is fresh until Monday's run is
    overdue, so the weekend gap is the interval that counts.
    """
    runs = [next_after(now)]
    for _ in range(INTERVAL_SAMPLES):
        runs.append(next_after(runs[-1]))
    return max(later - earlier for earlier, later in zip(runs, runs[1:]))


@dataclass(frozen=True)
class Staleness:
    """What the check found, for the API and the dashboard."""

    stale: bool
    newest: datetime | None  # the newest successful stored backup
    limit: datetime  # backups older than this are stale
    interval: timedelta
    last_failed: str | None = None  # why the last scheduled run failed, when that is what makes them stale

    def as_dict(self) -> dict:
        return {"stale": self.stale, "newest_ok": iso(self.newest), "stale_after": iso(self.limit),
                "interval_s": int(self.interval.total_seconds()), "last_failed": self.last_failed}


def is_stale(newest: datetime | None, now: datetime, interval: timedelta, *, up_since: datetime | None = None) -> bool:
    """True when `newest` is older than 1.5 `interval`s; with no backup at all, once `up_since` is that old."""
    reference = newest if newest is not None else up_since
    if reference is None:
        return True
    return now - reference > interval * STALE_FACTOR


class StaleWatch:
    """Checks staleness and says when to send the one alarm of an episode. Thread-safe."""

    def __init__(self, database: str, *, up_since: datetime):
        self.database = database
        self.up_since = up_since
        self._alarmed = False
        self._lock = threading.Lock()

    def check(self, newest: datetime | None, now: datetime, interval: timedelta, *,
              last_failed: str | None = None) -> tuple[Staleness, Event | None]:
        """The current staleness and, the first time in an episode, the event to send (else None).

        `last_failed`: the reason the last scheduled run failed (in this process or another one, as the
        history tells), which makes the backups stale however fresh the newest one is.
        """
        stale = is_stale(newest, now, interval, up_since=self.up_since) or last_failed is not None
        state = Staleness(stale=stale, newest=newest, limit=now - interval * STALE_FACTOR, interval=interval,
                          last_failed=last_failed)
        with self._lock:
            if not stale:
                self._alarmed = False
                return state, None
            if self._alarmed:
                return state, None
            self._alarmed = True
        event = Event(kind=STALE, outcome=FAILED, database=self.database, started=now, finished=now,
                      error=f"the last scheduled backup failed: {last_failed}" if last_failed
                      else "no successful stored backup within 1.5 schedule intervals",
                      details={"newest": newest, "interval_s": int(interval.total_seconds()),
                               "last_failed": last_failed})
        return state, event
