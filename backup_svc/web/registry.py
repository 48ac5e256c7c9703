"""The dumps running in this process: the concurrency limit and what progress pages read."""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from backup_svc.dump.pipeline import DumpProgress
from backup_svc.dump.watch import DumpWatch

# PostgreSQL keeps the first 63 bytes of an application_name.
APPLICATION_NAME_MAX = 63


class BackupIdInUse(Exception):
    """A client-chosen backup id that a running or remembered backup already has."""


@dataclass
class BackupRecord:
    """One backup attempt as the registry remembers it."""

    id: str
    filename: str
    actor: str
    progress: DumpProgress = field(default_factory=DumpProgress)
    # The HTTP status the attempt got: 200 once streaming, else the status of its refusal.
    status: int = 200
    # What the database says about this dump's progress, fetched only when someone asks.
    watch: DumpWatch = field(default_factory=DumpWatch, repr=False)

    @property
    def application_name(self) -> str:
        """The `application_name` of this dump's database session, as the server stores it."""
        return f"backup_svc-dump-{self.id}"[:APPLICATION_NAME_MAX]


class BackupRegistry:
    """At most `limit` dumps at once; finished ones are kept for `keep_s` seconds (at most `keep_n`)."""

    def __init__(self, limit: int, keep_s: float = 3600, keep_n: int = 50):
        self.limit = limit
        self.keep_s = keep_s
        self.keep_n = keep_n
        self._lock = threading.Lock()
        self._running: dict[str, BackupRecord] = {}
        self._finished: OrderedDict[str, BackupRecord] = OrderedDict()

    def try_begin(self, filename: str, actor: str, backup_id: str | None = None) -> BackupRecord | None:
        """Reserve a slot and return its record, or None when `limit` dumps already run.

        `backup_id` is the caller's id for the attempt (random when None); BackupIdInUse if taken.
        """
        with self._lock:
            self._check_unused(backup_id)
            if len(self._running) >= self.limit:
                return None
            record = BackupRecord(id=backup_id or secrets.token_urlsafe(12), filename=filename, actor=actor)
            self._running[record.id] = record
            return record

    def end(self, record: BackupRecord, *, status: int | None = None, error: str | None = None) -> None:
        """Free the record's slot (idempotent) and keep the record for later look-ups.

        `status` and `error` mark an attempt refused before its first byte (the response's status).
        """
        if status is not None:
            self._mark_refused(record, status, error)
        with self._lock:
            if self._running.pop(record.id, None) is None:
                return
            self._keep(record)

    def refused(self, backup_id: str, filename: str, actor: str, status: int, error: str) -> None:
        """Remember an attempt refused without a slot (429) so a page polling its id can say why."""
        record = BackupRecord(id=backup_id, filename=filename, actor=actor)
        self._mark_refused(record, status, error)
        with self._lock:
            if backup_id in self._running or backup_id in self._finished:
                return  # the id's first attempt is the one its poller is watching
            self._keep(record)

    @staticmethod
    def _mark_refused(record: BackupRecord, status: int, error: str | None) -> None:
        progress = record.progress
        record.status = status
        progress.error = progress.error or error
        progress.outcome = progress.outcome or "refused"
        progress.phase = progress.outcome
        progress.finished = progress.finished or time.time()

    def _check_unused(self, backup_id: str | None) -> None:
        if backup_id is not None and (backup_id in self._running or backup_id in self._finished):
            raise BackupIdInUse(backup_id)

    def _keep(self, record: BackupRecord) -> None:
        """Keep a finished record, forgetting the oldest past `keep_n` or `keep_s`; hold the lock."""
        self._finished[record.id] = record
        cutoff = time.time() - self.keep_s
        while self._finished and (
            len(self._finished) > self.keep_n
            or (next(iter(self._finished.values())).progress.finished or 0) < cutoff
        ):
            self._finished.popitem(last=False)

    def is_running(self, backup_id: str) -> bool:
        """Whether the backup with this id still holds a slot (its response is not closed yet)."""
        with self._lock:
            return backup_id in self._running

    def get(self, backup_id: str) -> BackupRecord | None:
        """The running or recently finished backup with this id."""
        with self._lock:
            return self._running.get(backup_id) or self._finished.get(backup_id)

    def running_count(self) -> int:
        """How many dumps run now."""
        with self._lock:
            return len(self._running)
