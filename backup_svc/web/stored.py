"""Stored backups taken inside the web worker: on BACKUP_SCHEDULE or by hand (`POST /api/v1/stored`),
sharing the dump slots with downloads, and what the latest runs did.

The scheduler is one daemon thread in the single worker, started by the server (not by create_app,
which stays free of side effects). When the worker exits, a running stored backup is told to stop
and its upload is aborted; a worker killed outright leaves an incomplete upload that the next
prune aborts once it is a day old. Outcomes are kept in memory (the bucket is the durable history
of what succeeded; the log has every run).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from backup_svc.dump.backup import backup_filename
from backup_svc.storage.prompt import PromptStorage
from backup_svc.storage.schedule import Scheduler, utc_now
from backup_svc.timefmt import iso_utc
from backup_svc.web.registry import BackupRecord
from backup_svc.web.state import BackupService

log = logging.getLogger(__name__)

ACTOR = "schedule"
SCHEDULE, BY_HAND = "schedule", "by hand"
AUDIT_EVENT = "stored-backup"
# A download holding the slot at the scheduled time delays the stored backup; after this long the
# run is given up (and logged) rather than piling up behind a stream of downloads.
SLOT_WAIT_S = 600
SLOT_POLL_S = 2.0
# How long the exiting worker waits for a cancelled upload to be aborted.
ABORT_WAIT_S = 20


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
        return {"trigger": self.trigger, "outcome": self.outcome, "started": iso_utc(self.started),
                "finished": iso_utc(self.finished), "name": self.name, "error": self.error, "id": self.backup_id}


class StoredBackups:
    """Takes stored backups in this worker; `start()` follows the schedule, `start_now()` takes one, `stop()` cancels."""

    def __init__(self, state: BackupService):
        self.state = state
        self.storage = state.settings.storage
        self.prompt = PromptStorage(self.storage, state.settings.backup_name)
        self.cancel = threading.Event()
        self.scheduler: Scheduler | None = None
        self.staleness = None  # the StalenessWatch beside the scheduler (notify)
        self.up_since: datetime = utc_now()
        self.last_run: RunOutcome | None = None
        self.last_scheduled: RunOutcome | None = None
        self.last_failure: RunOutcome | None = None
        self.current: BackupRecord | None = None
        self._running = threading.Lock()

    def start(self) -> "StoredBackups":
        schedule = self.storage.schedule
        if schedule is not None:
            from backup_svc.notify.outcome import StalenessWatch

            self.scheduler = Scheduler(schedule, self.run_once).start()
            self.staleness = StalenessWatch(self.state.reporter, self.state.settings).start()
            log.info("stored backups on schedule %r: %s, to %s", str(schedule), schedule.describe(),
                     self.storage.location.url)
        return self

    def next_run(self, now: datetime) -> datetime | None:
        """When the schedule runs next (None without BACKUP_SCHEDULE)."""
        schedule = self.storage.schedule
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
        schedule, now = self.storage.schedule, utc_now()
        return {
            "url": self.storage.location.url, "endpoint": self.prompt.endpoint, **probe,
            "schedule": {"expression": str(schedule), "description": schedule.describe(),
                         "next_run": iso_utc(self.next_run(now).timestamp())} if schedule is not None else None,
            "retention": str(self.storage.retention) if self.storage.retention else None,
        }

    def run_once(self) -> str:
        """Take one stored backup when a dump slot is free; return its outcome (also audited and logged)."""
        started = time.time()
        name = backup_filename(self.state.settings.backup_name, encrypted=self.state.settings.encryption.encrypts)
        record = self._wait_for_slot(name)
        if record is None:
            from backup_svc.notify.common import BACKUP, FAILED, Event, now

            error = f"every dump slot stayed busy for {SLOT_WAIT_S} s (BACKUP_MAX_CONCURRENT)"
            reporter = self.state.reporter
            if not self.cancel.is_set():  # a scheduled backup that never ran is a failure to tell about
                reporter.backup_finished(Event(kind=BACKUP, outcome=FAILED, database=reporter.database, error=error,
                                               finished=now()))
            return self._remember(SCHEDULE, ACTOR, "refused", started, None, {}, name=name, error=error)
        return self._take(record, SCHEDULE, started, {})

    def start_now(self, actor: str, facts: dict, backup_id: str | None = None) -> BackupRecord | None:
        """Start a stored backup in the background; its record (progress under its id), or None when
        any dump or upload is running. BackupIdInUse for a taken `backup_id`."""
        name = backup_filename(self.state.settings.backup_name, encrypted=self.state.settings.encryption.encrypts)
        record = self.state.registry.try_begin(name, actor, backup_id, alone=True, destination="storage")
        if record is None:
            return None
        thread = threading.Thread(target=self._take, args=(record, BY_HAND, time.time(), facts),
                                  name="stored-backup-now", daemon=True)
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
        from backup_svc.notify.outcome import reporting
        from backup_svc.pg.diagnose import CannotDump
        from backup_svc.storage.lock import AnotherBackupRunning
        from backup_svc.storage.run import take_stored_backup

        registry = self.state.registry
        what = "scheduled stored backup" if trigger == SCHEDULE else "stored backup started by hand"
        stop = _Stop(self.cancel)
        # DELETE /api/v1/backups/<id> cancels a dump, then cuts its client's connection; a stored backup
        # has no connection: that cut stops its upload instead (aborted at the next chunk).
        record.disconnect = stop.set
        with self._running:
            self.current = record
            try:
                # notifications, heartbeat and a restore drill hear of it, good or failed (notify/)
                with reporting(self.state.reporter, self.state.settings, record.filename) as outcome:
                    result = take_stored_backup(self.state.settings, self.storage, name=record.filename,
                                                application_name=record.application_name, progress=record.progress,
                                                cancel=stop)
                    outcome.stored(result.stored)
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
                    _mark_ended(record, "cancelled", f"{error}. Nothing was stored: the upload was aborted.")
                    registry.end(record)
                    return self._remember(trigger, record.actor, "cancelled", started, record, facts, error=error)
                error = str(exc) or type(exc).__name__
                log.error("%s failed, the upload was aborted: %s", what, error)
                _mark_ended(record, "failed", f"{error}. Nothing was stored: the upload was aborted.")
                registry.end(record)
                return self._remember(trigger, record.actor, "failed", started, record, facts, error=error)
            finally:
                self.current = None
            registry.end(record)
        stored = result.stored
        outcome = "ok" if not result.retention_error else "ok, retention failed"
        return self._remember(trigger, record.actor, outcome, started, record, facts, error=result.retention_error,
                              gzip_bytes=stored.size, sql_bytes=result.sql_bytes, sha256=stored.sha256)

    def _remember(self, trigger: str, actor: str, outcome: str, started: float, record: BackupRecord | None,
                  facts: dict, *, name: str | None = None, error: str | None = None, **amounts) -> str:
        """Keep the run's outcome and write its audit entry."""
        name = record.filename if record is not None else name
        backup_id = record.id if record is not None else None
        run = RunOutcome(trigger=trigger, outcome=outcome, started=started, finished=time.time(), name=name,
                         error=error, backup_id=backup_id)
        self.last_run = run
        if trigger == SCHEDULE:
            self.last_scheduled = run
        if run.failed:
            self.last_failure = run
        self.state.audit.record(event=AUDIT_EVENT, actor=actor, client=facts.get("client"),
                                user_agent=facts.get("user_agent"), outcome=outcome, started=started,
                                backup_id=backup_id, name=name, error=error, **amounts)
        return outcome

    def stop(self) -> None:
        """Stop the schedule and any running stored backup (its upload is aborted); wait a little for that."""
        self.cancel.set()
        if self.scheduler is not None:
            self.scheduler.stop(timeout_s=0.1)
        if self.staleness is not None:
            self.staleness.stop()
        if self._running.acquire(timeout=ABORT_WAIT_S):
            self._running.release()


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
    progress = record.progress
    progress.outcome = outcome
    progress.phase = outcome
    progress.error = error
    progress.finished = time.time()
