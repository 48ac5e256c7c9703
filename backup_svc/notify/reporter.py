"""The notify side of one service process: stored-backup outcomes in; notifications, drills and the
staleness alarm out; and what the dashboard shows ("last proven restorable", delivery problems).

Whoever finishes a stored backup calls `backup_finished(event, drill=...)`: it returns at once. The
notification goes through the background Notifier; a drill (when RESTORE_DRILL_URL is set and the
backup succeeded) runs in a thread of its own, one at a time, and reports through the same channels.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Callable, Protocol

from backup_svc.notify.common import Event
from backup_svc.timefmt import utc_now
from backup_svc.notify.delivery import Notifier
from backup_svc.notify.drill import DrillReport
from backup_svc.notify.settings import NotifySettings
from backup_svc.notify.staleness import Staleness, StalenessAlarm

log = logging.getLogger("backup_svc.notify")

DrillJob = Callable[[], DrillReport]  # runs one drill of a chosen backup and reports it


class OutcomeSink(Protocol):
    """Where outcomes are also recorded (the durable history, history/hooks.py); must return at once."""

    def __call__(self, type_: str, data: dict, when: datetime | None) -> None: ...


def _payload(event: Event) -> dict:
    """An event as the history keeps it: the webhook's JSON without the chat text."""
    payload = event.payload()
    payload.pop("text", None)
    payload.pop("content", None)
    return payload


class Reporter:
    """Outcomes in, notifications out; thread-safe; never raises into the caller."""

    def __init__(
        self,
        settings: NotifySettings,
        database: str,
        *,
        notifier: Notifier | None = None,
        up_since: datetime | None = None,
    ):
        self.settings = settings
        self.database = database
        self.notifier = notifier or Notifier(settings)
        self.staleness_alarm = StalenessAlarm(database, up_since=up_since or utc_now())
        self.last_drill: DrillReport | None = None
        self.last_proven: DrillReport | None = None  # the newest drill that passed
        self.staleness: Staleness | None = None
        self._drill_lock = threading.Lock()
        self._drill_thread: threading.Thread | None = None
        # The durable history, when this process keeps one: every outcome and delivery problem goes there too.
        self.history: OutcomeSink | None = None
        self.notifier.on_problem = self._delivery_problem

    def _record(self, type_: str, data: dict, when: datetime | None) -> None:
        if self.history is not None:
            try:
                self.history(type_, data, when)
            except Exception:  # recording must never change an outcome
                log.exception("notify: could not record the %s outcome in the history", type_)

    def _delivery_problem(self, delivery) -> None:
        self._record("notify-problem", delivery.as_dict(), delivery.at)

    @property
    def drills_enabled(self) -> bool:
        return self.settings.drill is not None

    def backup_finished(self, event: Event, *, drill: DrillJob | None = None) -> None:
        """Report a stored backup's outcome; after a good one, start `drill` in the background."""
        self._record(event.kind, _payload(event), event.when)
        self.notifier.submit(event)
        if drill is not None and not event.failed and self.drills_enabled:
            self.start_drill(drill)

    def warn(self, event: Event) -> None:
        """Send a warning about a backup that succeeded (a shrink alarm) to mail and the webhook, and
        record it in the history (`kind=outcome`, type `shrink`)."""
        log.warning("notify: %s", event.headline())
        self._record(event.kind, _payload(event), event.when)
        self.notifier.submit(event)

    def start_drill(self, job: DrillJob) -> bool:
        """Run `job` in a background thread unless a drill is already running; True when started."""
        if not self._drill_lock.acquire(blocking=False):
            log.warning("notify: a restore drill is still running; not starting another")
            return False

        def run() -> None:
            try:
                self.drill_now(job)
            finally:
                self._drill_lock.release()

        self._drill_thread = threading.Thread(target=run, name="restore-drill", daemon=True)
        self._drill_thread.start()
        return True

    def drill_now(self, job: DrillJob) -> DrillReport | None:
        """Run `job` in this thread, record it and send its notification."""
        try:
            report = job()
        except Exception:  # the drill reports its own failures; anything else is a bug, logged
            log.exception("notify: the restore drill raised")
            return None
        self.last_drill = report
        self._record("drill", report.as_dict(), report.finished)
        if report.outcome == "ok":
            self.last_proven = report
            log.info(
                "notify: restore drill of %s ok in %.1f s (%d tables, %d rows)",
                report.name,
                report.seconds,
                report.tables,
                report.rows,
            )
        else:
            log.error("notify: restore drill of %s failed: %s", report.name, report.error)
        self.notifier.submit(report.event(self.database))
        return report

    def wait_for_drill(self, timeout_s: float) -> bool:
        """Wait for a running drill (for a command that exits next); True when none is left running."""
        thread = self._drill_thread
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def check_staleness(
        self,
        newest_ok: datetime | None,
        interval: timedelta,
        when: datetime | None = None,
        *,
        already_alarmed: Callable[[], bool] | None = None,
        last_failed: str | None = None,
    ) -> Staleness:
        """Staleness now (for the API and the dashboard); sends the episode's one alarm when it starts,
        unless `already_alarmed()` says the durable history has it already (a restart, another replica)."""
        state, alarm = self.staleness_alarm.check(newest_ok, when or utc_now(), interval, last_failed=last_failed)
        self.staleness = state
        if alarm is not None and already_alarmed is not None and already_alarmed():
            log.info("notify: backups are stale; the alarm for this episode is already in the history")
            alarm = None
        if alarm is not None:
            log.error(
                "notify: backups are stale: newest successful stored backup %s",
                newest_ok.isoformat() if newest_ok else "none",
            )
            self._record(alarm.kind, _payload(alarm), alarm.when)
            self.notifier.submit(alarm)
        return state

    def status(self) -> dict:
        """For the dashboard and `GET /api/v1/stored`: drills, staleness, delivery problems."""
        return {
            "notifications": self.notifier.status(),
            "last_drill": self.last_drill.as_dict() if self.last_drill else None,
            "last_proven_restorable": self.last_proven.as_dict() if self.last_proven else None,
            "staleness": self.staleness.as_dict() if self.staleness else None,
        }
