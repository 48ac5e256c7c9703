"""Stored backups taken inside the web worker: on BACKUP_SCHEDULE, sharing the dump slots with downloads.

The scheduler is one daemon thread in the single worker, started by the server (not by create_app,
which stays free of side effects). When the worker exits, a running stored backup is told to stop
and its upload is aborted; a worker killed outright leaves an incomplete upload that the next
prune aborts once it is a day old.
"""
from __future__ import annotations

import logging
import threading
import time

from backup_svc.dump.backup import backup_filename
from backup_svc.storage.schedule import Scheduler
from backup_svc.web.state import BackupService

log = logging.getLogger(__name__)

ACTOR = "schedule"
# A download holding the slot at the scheduled time delays the stored backup; after this long the
# run is given up (and logged) rather than piling up behind a stream of downloads.
SLOT_WAIT_S = 600
SLOT_POLL_S = 2.0
# How long the exiting worker waits for a cancelled upload to be aborted.
ABORT_WAIT_S = 20


class StoredBackups:
    """Takes stored backups in this worker; `start()` follows the schedule, `stop()` cancels."""

    def __init__(self, state: BackupService):
        self.state = state
        self.cancel = threading.Event()
        self.scheduler: Scheduler | None = None
        self.staleness = None  # the StalenessWatch beside the scheduler
        self._running = threading.Lock()

    def start(self) -> "StoredBackups":
        storage = self.state.settings.storage
        if storage is not None and storage.schedule is not None:
            from backup_svc.notify.outcome import StalenessWatch

            self.scheduler = Scheduler(storage.schedule, self.run_once).start()
            self.staleness = StalenessWatch(self.state.reporter, self.state.settings).start()
            log.info("stored backups on schedule %r: %s, to %s", str(storage.schedule), storage.schedule.describe(),
                     storage.location.url)
        return self

    def run_once(self) -> str:
        """Take one stored backup when a dump slot is free; return its outcome (also audited and logged)."""
        from backup_svc.notify.common import BACKUP, FAILED, Event, now
        from backup_svc.notify.outcome import reporting
        from backup_svc.storage.lock import AnotherBackupRunning
        from backup_svc.storage.run import take_stored_backup

        state, started = self.state, time.time()
        name = backup_filename(state.settings.backup_name)
        record = self._wait_for_slot(name)
        if record is None:
            error = f"every dump slot stayed busy for {SLOT_WAIT_S} s (BACKUP_MAX_CONCURRENT)"
            if not self.cancel.is_set():  # a scheduled backup that never ran is a failure to tell about
                state.reporter.backup_finished(Event(kind=BACKUP, outcome=FAILED, database=state.reporter.database,
                                                     error=error, finished=now()))
            return self._audit("refused", started, error=error)
        with self._running:
            try:
                with reporting(state.reporter, state.settings, name) as outcome:
                    result = take_stored_backup(state.settings, state.settings.storage, name=name,
                                                application_name=record.application_name, progress=record.progress,
                                                cancel=self.cancel)
                    outcome.stored(result.stored)
            except AnotherBackupRunning as exc:
                log.info("scheduled stored backup skipped: %s", exc)
                return self._audit("skipped", started, record.id, error=str(exc))
            except Exception as exc:
                log.error("scheduled stored backup failed, the upload was aborted: %s", exc)
                return self._audit("failed", started, record.id, error=str(exc) or type(exc).__name__)
            finally:
                state.registry.end(record)
        stored = result.stored
        return self._audit("ok" if not result.retention_error else "ok, retention failed", started, record.id,
                           gzip_bytes=stored.size, sql_bytes=result.sql_bytes, sha256=stored.sha256,
                           error=result.retention_error)

    def _wait_for_slot(self, name: str):
        deadline = time.monotonic() + SLOT_WAIT_S
        while not self.cancel.is_set():
            record = self.state.registry.try_begin(name, ACTOR)
            if record is not None or time.monotonic() > deadline:
                return record
            self.cancel.wait(SLOT_POLL_S)
        return None

    def _audit(self, outcome: str, started: float, backup_id: str | None = None, **facts) -> str:
        self.state.audit.record(actor=ACTOR, client=None, user_agent=None, outcome=outcome, started=started,
                                backup_id=backup_id, **facts)
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
