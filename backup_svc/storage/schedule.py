"""When stored backups run: `BACKUP_SCHEDULE`, a 5-field cron expression in UTC, and a thread that
follows it.

After each run the next time is computed from *now*, so runs missed while the process was down,
asleep or busy with a long backup are skipped, never replayed in a burst.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Callable

from backup_svc.timefmt import utc_now

log = logging.getLogger(__name__)


class CronSchedule:
    """A validated 5-field cron expression (minute hour day-of-month month day-of-week), UTC."""

    def __init__(self, expression: str):
        from cronsim import CronSim, CronSimError

        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"must have 5 fields (minute hour day month weekday, UTC), got {len(fields)}: {expression!r}"
            )
        self.expression = " ".join(fields)
        try:
            CronSim(self.expression, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except CronSimError as exc:
            raise ValueError(f"is not a valid cron expression ({exc}): {expression!r}") from None

    def __str__(self) -> str:
        return self.expression

    def next_after(self, when: datetime) -> datetime:
        """The first scheduled time strictly after `when` (UTC)."""
        from cronsim import CronSim

        return next(iter(CronSim(self.expression, when.astimezone(timezone.utc).replace(microsecond=0))))

    def describe(self) -> str:
        """The expression in words, e.g. "At 03:00" (UTC)."""
        from cronsim import CronSim

        try:
            return CronSim(self.expression, datetime.now(timezone.utc)).explain() + " (UTC)"
        except Exception:  # explain() does not cover every expression; the expression itself will do
            return f"cron {self.expression!r} (UTC)"


def parse_schedule(text: str) -> CronSchedule | None:
    """`BACKUP_SCHEDULE` → a schedule, or None when empty; ValueError says what is wrong."""
    return CronSchedule(text) if text.strip() else None


class Scheduler:
    """A daemon thread that calls `job()` at each scheduled time until `stop()`.

    A job that raises is logged and the schedule goes on. Times missed while a job ran are skipped.
    """

    def __init__(
        self,
        schedule: CronSchedule,
        job: Callable[[], object],
        *,
        clock: Callable[[], datetime] = utc_now,
        poll_s: float = 30.0,
        name: str = "backup-scheduler",
    ):
        self.schedule = schedule
        self.job = job
        self.clock = clock
        self.poll_s = poll_s  # the clock is re-read at least this often while waiting
        self.next_run: datetime | None = None
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.next_run = self.schedule.next_after(self.clock())
            log.info("next stored backup at %s UTC", f"{self.next_run:%Y-%m-%d %H:%M}")
            if not self._sleep_until(self.next_run):
                return
            self.runs += 1
            try:
                self.job()
            except Exception:
                log.exception("scheduled stored backup raised")

    def _sleep_until(self, when: datetime) -> bool:
        """Wait until `when` (re-reading the clock, so a suspended machine does not oversleep by much);
        False when stopped first."""
        while True:
            left = (when - self.clock()).total_seconds()
            if left <= 0:
                return True
            if self._stop.wait(min(left, self.poll_s)):
                return False
