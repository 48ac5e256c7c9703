"""Stored backups taken inside the web worker: on BACKUP_SCHEDULE or by hand (`POST /api/v1/stored`),
sharing the dump slots with downloads, and what the latest runs did.

The scheduler is one daemon thread in the single worker, started by the server (not by create_app,
which stays free of side effects). When the worker exits, a running stored backup is told to stop
and its upload is aborted; a worker killed outright (SIGKILL, out of memory) is reported by the next
worker, which aborts its upload (serving/unfinished.py). Outcomes are kept in memory (the bucket is the durable history
of what succeeded; the log has every run).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from backup_svc.dump.attempt import CANCELLED, FAILED
from backup_svc.dump.registry import BackupRecord
from backup_svc.history.hooks import record_run
from backup_svc.history.retention import pruning_after_backup
from backup_svc.storage.destination import destination_for
from backup_svc.storage.take import owner_lookup, stored_backup_name
from backup_svc.storage.schedule import Scheduler
from backup_svc.timefmt import iso_utc, utc_now

log = logging.getLogger(__name__)

ACTOR = "schedule"
SCHEDULE, BY_HAND = "schedule", "by hand"
AUDIT_EVENT = "stored-backup"
# A download holding the slot at the scheduled time delays the stored backup; after this long the
# run is given up (and logged) rather than piling up behind a stream of downloads.
SLOT_WAIT_S = 600
SLOT_POLL_S = 2.0
# How long the exiting worker waits for a cancelled upload to be aborted when it knows no grace period.
ABORT_WAIT_S = 20
# What the exit keeps back from the grace period: the arbiter's SIGKILL comes at its end.
EXIT_MARGIN_S = 1.0
# Of what is left of the grace, the share a cancelled run may take; the rest sends its notification.
ABORT_SHARE = 0.6
# How long it then waits for its last history events to reach the bucket (they are in the log either way).
HISTORY_FLUSH_S = 5


@dataclass(frozen=True)
class RunOutcome:
    """How one stored backup run ended: "ok", "ok, retention failed", "failed", "cancelled", "skipped" or "refused"."""

    trigger: str  # SCHEDULE or BY_HAND
    outcome: str
    started: float
    finished: float
    name: str | None = None
    error: str | None = None
    backup_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "refused")

    def as_json(self) -> dict:
        return {
            "trigger": self.trigger,
            "outcome": self.outcome,
            "started": iso_utc(self.started),
            "finished": iso_utc(self.finished),
            "name": self.name,
            "error": self.error,
            "id": self.backup_id,
        }


class StoredBackups:
    """Takes stored backups in this worker; `start()` follows the schedule, `start_now()` takes one, `stop()` cancels."""

    def __init__(self, state):
        """`state`: the worker's BackupService (web/state.py): its settings, setup, registry, reporter, audit."""
        self.state = state
        self.storage = state.settings.storage
        self.owner = owner_lookup(
            state.settings.dump, lambda: state.facts.get(timeout_s=state.settings.connect_timeout_s).system_identifier
        )
        # the bucket or the rclone remote BACKUP_STORAGE_URL names, behind the same few calls (destination.py)
        self.destination = destination_for(self.storage)
        self.prompt = self.destination.prompt(state.settings.backup_name, self.owner.get_now)
        self.cancel = threading.Event()
        self.scheduler: Scheduler | None = None
        self.staleness = None  # the StalenessWatch beside the scheduler (notify)
        self.refresher = None  # keeps the bucket's history at hand (history/refresh.py)
        self.up_since: datetime = utc_now()
        self.last_run: RunOutcome | None = None
        self.last_scheduled: RunOutcome | None = None
        self.last_failure: RunOutcome | None = None
        self.current: BackupRecord | None = None
        self._running = threading.Lock()
        self._stop_deadline: float | None = None  # monotonic: when the process must have exited
        # Set by the server: a marker for each run while it runs, for the next worker should this one be
        # killed outright (serving/unfinished.py); without it a run leaves none.
        self.markers = None

    def start(self) -> "StoredBackups":
        from backup_svc.history.refresh import HistoryRefresher
        from backup_svc.notify.stored import StalenessWatch

        schedule = self.storage.schedule
        if schedule is not None:
            self.scheduler = Scheduler(schedule, self.run_once).start()
            log.info(
                "stored backups on schedule %r: %s, to %s",
                str(schedule),
                schedule.describe(),
                self.storage.location.url,
            )
        elif self.storage.expected_schedule is not None:
            log.info(
                "stored backups expected from another process on %r (BACKUP_EXPECTED_SCHEDULE): %s; "
                "this service only watches for them",
                str(self.storage.expected_schedule),
                self.storage.expected_schedule.describe(),
            )
        if self.storage.watched_schedule is not None:
            self.staleness = StalenessWatch(self.state.reporter, self.state.setup, history=self.state.history).start()
        audit = self.state.audit
        # The bucket's history kept at hand; this minute's refusals handed on once the minute is over; a
        # run seen in the history (a cron service's too) checked for staleness at once.
        ticks = [lambda: audit.flush_refusals(iso_utc(time.time())[:16])]
        if self.staleness is not None:
            ticks.append(self.staleness.check_after_new_run)
        self.refresher = HistoryRefresher(self.state.history, tuple(ticks)).start()
        return self

    def next_run(self, now: datetime) -> datetime | None:
        """When the schedule runs next, here or in another process (None without a schedule)."""
        schedule = self.storage.watched_schedule
        if schedule is None:
            return None
        planned = self.scheduler.next_run if self.scheduler is not None else None
        return planned if planned is not None and planned > now else schedule.next_after(now)

    def report(self) -> dict:
        """The storage as `/api/v1/database` reports it: setting, reachability, permissions, schedule."""
        from backup_svc.storage.client import StorageError

        try:
            probe = self.prompt.permissions().as_json()
        except StorageError as exc:
            probe = {"reachable": False, "ok": False, "permissions": {}, "problems": [self.prompt.explain(exc)]}
        schedule, now = self.storage.watched_schedule, utc_now()
        return {
            "url": self.storage.location.url,
            "endpoint": self.prompt.endpoint,
            **probe,
            "schedule": {
                "expression": str(schedule),
                "description": schedule.describe(),
                "next_run": iso_utc(self.next_run(now).timestamp()),
            }
            if schedule is not None
            else None,
            "retention": str(self.storage.retention) if self.storage.retention else None,
        }

    def run_once(self) -> str:
        """Take one stored backup when a dump slot is free; return its outcome (also audited and logged)."""
        started = time.time()
        name = stored_backup_name(
            self.state.settings.backup_name,
            self.state.settings.storage,
            encrypted=self.state.settings.encryption.encrypts,
        )
        record = self._wait_for_slot(name)
        if record is None:
            from backup_svc.notify.common import BACKUP, FAILED, Event
            from backup_svc.timefmt import utc_now

            error = f"every dump slot stayed busy for {SLOT_WAIT_S} s (BACKUP_MAX_CONCURRENT)"
            reporter = self.state.reporter
            if not self.cancel.is_set():  # a scheduled backup that never ran is a failure to tell about
                reporter.backup_finished(
                    Event(kind=BACKUP, outcome=FAILED, database=reporter.database, error=error, finished=utc_now())
                )
            return self._remember(SCHEDULE, ACTOR, "refused", started, None, {}, name=name, error=error)
        return self._take(record, SCHEDULE, started, {})

    def start_now(self, actor: str, facts: dict, backup_id: str | None = None) -> BackupRecord | None:
        """Start a stored backup in the background; its record (progress under its id), or None when
        any dump or upload is running. BackupIdInUse for a taken `backup_id`."""
        name = stored_backup_name(
            self.state.settings.backup_name,
            self.state.settings.storage,
            encrypted=self.state.settings.encryption.encrypts,
        )
        record = self.state.registry.try_begin(name, actor, backup_id, alone=True, destination="storage")
        if record is None:
            return None
        thread = threading.Thread(
            target=self._take, args=(record, BY_HAND, time.time(), facts), name="stored-backup-now", daemon=True
        )
        thread.start()
        return record

    def _wait_for_slot(self, name: str) -> BackupRecord | None:
        deadline = time.monotonic() + SLOT_WAIT_S
        while not self.cancel.is_set():
            record = self.state.registry.try_begin(name, ACTOR, destination="storage")
            if record is not None or time.monotonic() > deadline:
                return record
            self.cancel.wait(SLOT_POLL_S)
        return None

    def _take(self, record: BackupRecord, trigger: str, started: float, facts: dict) -> str:
        """Run the stored backup of `record` (which holds a slot) to its end; free the slot; remember it."""
        from backup_svc.notify.stored import reporting
        from backup_svc.pg.diagnose import CannotDump
        from backup_svc.storage.lock import AnotherBackupRunning

        registry = self.state.registry
        what = "scheduled stored backup" if trigger == SCHEDULE else "stored backup started by hand"
        stop = _Stop(self.cancel)
        # DELETE /api/v1/backups/<id> cancels a dump, then cuts its client's connection; a stored backup
        # has no connection: that cut stops its upload instead (aborted at the next chunk).
        record.disconnect = stop.set
        with self._running, self._marked(record, trigger, started):
            self.current = record
            try:
                # notifications, heartbeat and a restore drill hear of it, good or failed (notify/)
                with reporting(self.state.reporter, self.state.setup, record.filename) as outcome:
                    result = self.destination.take(
                        self.state.settings.dump,
                        name=record.filename,
                        application_name=record.application_name,
                        progress=record.progress,
                        cancel=stop,
                        recipients=self.state.settings.encryption.recipients,
                        after=pruning_after_backup(self.state.settings.storage),
                    )
                    outcome.stored(result.stored, result.shrink, rows=result.rows, drill=self._remote_drill(record))
            except AnotherBackupRunning as exc:
                log.info("%s skipped: %s", what, exc)
                registry.end(record, status=429, error=f"{exc}; this one was not started")
                return self._remember(trigger, record.actor, "skipped", started, record, facts, error=str(exc))
            except CannotDump as exc:
                log.error("%s failed before its first byte: %s", what, exc.message)
                registry.end(record, status=502, error=exc.message)
                return self._remember(trigger, record.actor, "failed", started, record, facts, error=exc.message)
            except Exception as exc:
                if record.stop_reason is not None:  # cancelled by someone
                    error = record.stop_reason[1]
                    log.warning("%s %s; the upload was aborted", what, error)
                    _mark_ended(record, CANCELLED, f"{error}. Nothing was stored: the upload was aborted.")
                    registry.end(record)
                    return self._remember(trigger, record.actor, "cancelled", started, record, facts, error=error)
                error = str(exc) or type(exc).__name__
                log.error("%s failed, the upload was aborted: %s", what, error)
                _mark_ended(record, FAILED, f"{error}. Nothing was stored: the upload was aborted.")
                registry.end(record)
                return self._remember(trigger, record.actor, "failed", started, record, facts, error=error)
            finally:
                self.current = None
            registry.end(record)
        stored = result.stored
        outcome = "ok" if not result.retention_error else "ok, retention failed"
        return self._remember(
            trigger,
            record.actor,
            outcome,
            started,
            record,
            facts,
            error=result.retention_error,
            gzip_bytes=stored.size,
            sql_bytes=result.sql_bytes,
            sha256=stored.sha256,
            rows=result.rows,
        )

    def _remote_drill(self, record: BackupRecord):
        """The restore drill of a backup just stored on an rclone remote (a bucket's is notify's default)."""
        if not self.storage.is_rclone:
            return None
        from backup_svc.notify.remote_drill import drill_remote_file

        target = self.destination.target(self.state.settings.dump.stall_timeout_s)
        return lambda: drill_remote_file(self.state.setup, target, record.filename)

    def _remember(
        self,
        trigger: str,
        actor: str,
        outcome: str,
        started: float,
        record: BackupRecord | None,
        facts: dict,
        *,
        name: str | None = None,
        error: str | None = None,
        backup_id: str | None = None,
        **amounts,
    ) -> str:
        """Keep the run's outcome and write its audit entry."""
        name = record.filename if record is not None else name
        backup_id = record.id if record is not None else backup_id
        run = RunOutcome(
            trigger=trigger,
            outcome=outcome,
            started=started,
            finished=time.time(),
            name=name,
            error=error,
            backup_id=backup_id,
        )
        self.last_run = run
        if trigger == SCHEDULE:
            self.last_scheduled = run
        if run.failed:
            self.last_failure = run
        record_run(
            self.state.history,
            trigger=trigger,
            outcome=outcome,
            started=started,
            finished=run.finished,
            name=name,
            error=error,
            backup_id=backup_id,
        )
        self.state.audit.record(
            event=AUDIT_EVENT,
            actor=actor,
            client=facts.get("client"),
            user_agent=facts.get("user_agent"),
            outcome=outcome,
            started=started,
            backup_id=backup_id,
            name=name,
            error=error,
            **amounts,
        )
        return outcome

    def _marked(self, record: BackupRecord, trigger: str, started: float):
        """The run's marker while it runs (serving/unfinished.py), when the server keeps them."""
        if self.markers is None:
            return contextlib.nullcontext()
        return self.markers.running(
            name=record.filename,
            **self.destination.marker(record.filename),
            trigger=trigger,
            actor=record.actor,
            started=started,
            id=record.id,
        )

    def remember_unfinished(
        self,
        *,
        trigger: str | None,
        actor: str | None,
        started: float,
        name: str | None,
        backup_id: str | None,
        error: str,
    ) -> None:
        """A run that a killed worker left unfinished, as this worker's last run and failure (and audited)."""
        self._remember(
            trigger or SCHEDULE,
            actor or ACTOR,
            "failed",
            started,
            None,
            {},
            name=name,
            error=error,
            backup_id=backup_id,
        )

    def begin_shutdown(self, grace_s: float) -> None:
        """SIGTERM arrived: stop any running stored backup now (from the signal handler: sets flags only);
        everything must be over within `grace_s`."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + grace_s - EXIT_MARGIN_S
        self.cancel.set()

    def stop(self) -> None:
        """Stop the schedule and any running stored backup (its upload is aborted), wait for that, and send
        its notification — all before the grace period ends (begin_shutdown), each wait bounded."""
        self.cancel.set()
        deadline = self._stop_deadline or time.monotonic() + ABORT_WAIT_S
        if self.scheduler is not None:
            self.scheduler.stop(timeout_s=0.1)
        if self.staleness is not None:
            self.staleness.stop()
        if self.refresher is not None:
            self.refresher.stop()
        left = max(deadline - time.monotonic(), 0.0)
        if self._running.acquire(timeout=left * ABORT_SHARE if self._stop_deadline else left):
            self._running.release()
        else:  # it did not end in time: say so now, or nobody hears of it
            from backup_svc.notify.common import BACKUP, Event
            from backup_svc.notify.common import FAILED as BACKUP_FAILED

            error = (
                "the service shut down while the stored backup was still stopping: a later run aborts its "
                "incomplete upload (an object completed without its sha256 is never counted as a backup)"
            )
            log.error("stored backup %s: %s", self.current.filename if self.current else "", error)
            reporter = self.state.reporter
            reporter.backup_finished(
                Event(kind=BACKUP, outcome=BACKUP_FAILED, database=reporter.database, error=error, finished=utc_now())
            )
        # what this process still has to say goes out now (history to the bucket, notifications), in the grace
        self.state.audit.flush_refusals()
        self.state.history.flush(min(HISTORY_FLUSH_S, max(deadline - time.monotonic(), 0.1) / 2))
        notifier = self.state.reporter.notifier
        if not notifier.flush(timeout_s=max(deadline - time.monotonic(), 0.1)):
            log.error("notifications still unsent when the service exited were given up")


class _Stop:
    """Stops one stored backup: set by its cancellation, or by the worker's shutdown (`shutdown`)."""

    def __init__(self, shutdown: threading.Event):
        self.shutdown = shutdown
        self._cancelled = threading.Event()

    def set(self) -> None:
        self._cancelled.set()

    def is_set(self) -> bool:
        return self._cancelled.is_set() or self.shutdown.is_set()


def _mark_ended(record: BackupRecord, outcome: str, error: str) -> None:
    """The dump may have finished well ("ok") before the upload failed: the attempt as a whole did not."""
    record.progress.end(outcome, error, overrule=True)
