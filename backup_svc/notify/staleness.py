"""The staleness alarm: scheduled backups that stop are noticed here, without any outside service.

Stale is storage/status.py's one rule (`is_stale`, the dashboard's warning too): a schedule is
configured and the newest successful stored backup is older than 1.5 schedule intervals (or there is
none and the service has been up that long), or the last scheduled run failed (any process's: the
history tells). One alarm per stale episode: the episode ends when a fresh backup appears.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from backup_svc.notify.common import FAILED, STALE, Event
from backup_svc.timefmt import iso
from backup_svc.storage.status import STALE_INTERVALS, is_stale


@dataclass(frozen=True)
class Staleness:
    """What the check found, for the API and the dashboard."""

    stale: bool
    newest: datetime | None  # the newest successful stored backup
    # When the alarm fires (or fired) unless a newer backup arrives: the newest backup's time (with none,
    # the service's start) plus 1.5 intervals.
    alarm_at: datetime
    interval: timedelta
    last_failed: str | None = None  # why the last scheduled run failed, when that is what makes them stale

    def seen_with(self, last_failed: str | None, now: datetime, up_since: datetime) -> "Staleness":
        """This check's judgement with the last scheduled run as the history shows it now (the newest backup
        as this check listed it). The page and the API show this, so the failing notice appears with the
        failure it names instead of one storage listing later (the check lists before it judges)."""
        stale = is_stale(
            self.newest, now, self.interval, last_scheduled_failed=last_failed is not None, up_since=up_since
        )
        return replace(self, stale=stale, last_failed=last_failed)

    def as_dict(self) -> dict:
        return {
            "stale": self.stale,
            "newest_ok": iso(self.newest),
            "alarm_at": iso(self.alarm_at),
            "interval_s": int(self.interval.total_seconds()),
            "last_failed": self.last_failed,
        }


class StalenessAlarm:
    """Checks staleness and says when to send the one alarm of an episode. Thread-safe."""

    def __init__(self, database: str, *, up_since: datetime):
        self.database = database
        self.up_since = up_since
        self._alarmed = False
        self._lock = threading.Lock()

    def check(
        self, newest: datetime | None, now: datetime, interval: timedelta, *, last_failed: str | None = None
    ) -> tuple[Staleness, Event | None]:
        """The current staleness and, the first time in an episode, the event to send (else None).

        `last_failed`: the reason the last scheduled run failed (in this process or another one, as the
        history tells), which makes the backups stale however fresh the newest one is.
        """
        stale = is_stale(newest, now, interval, last_scheduled_failed=last_failed is not None, up_since=self.up_since)
        reference = newest if newest is not None else self.up_since
        state = Staleness(
            stale=stale,
            newest=newest,
            alarm_at=reference + interval * STALE_INTERVALS,
            interval=interval,
            last_failed=last_failed,
        )
        with self._lock:
            if not stale:
                self._alarmed = False
                return state, None
            if self._alarmed:
                return state, None
            self._alarmed = True
        event = Event(
            kind=STALE,
            outcome=FAILED,
            database=self.database,
            started=now,
            finished=now,
            error=f"the last scheduled backup failed: {last_failed}"
            if last_failed
            else "no successful stored backup within 1.5 schedule intervals",
            details={"newest": newest, "interval_s": int(interval.total_seconds()), "last_failed": last_failed},
        )
        return state, event
