"""The dumps running in this process: the concurrency limit and what progress pages read."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from typing import Any, Callable

from backup_svc.dump.attempt import REFUSED, DumpProgress, Interrupt
from backup_svc.dump.pipeline import GzipDump
from backup_svc.dump.report import ForwardPercent
from backup_svc.dump.watch import DumpWatch
from backup_svc.pg.diagnose import ABORTED, CANCELLED

# PostgreSQL keeps the first 63 bytes of an application_name.
APPLICATION_NAME_MAX = 63
# A request that finds every slot taken waits up to this long when a slot's client has already left
# (its dump is being stopped): a script that aborts and retries at once never meets its own dead
# download's 429. Within the 2 s the contract gives for stopping pg_dump after a disconnect.
RELEASE_WAIT_S = 2.0
CLIENT_LEFT = "the client disconnected before the first byte"


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
    # What the client has received of the response (set when the download starts streaming).
    # serving/sendmeter.py's SendMeter of a download, set by web/api.py (the dump room does not import serving)
    meter: Any = field(default=None, repr=False)
    # The percent pages have been shown: never goes back.
    shown: ForwardPercent = field(default_factory=ForwardPercent, repr=False)
    # Whether the client's connection has closed (asked while nothing is written to it); never, by default.
    client_gone: Callable[[], bool] = field(default=lambda: False, repr=False)
    disconnect: Callable[[], None] = field(default=lambda: None, repr=False)  # cut the client's connection
    dump: GzipDump | None = field(default=None, repr=False)  # once pg_dump is about to start
    stop_reason: Interrupt | None = None  # set by cancel()
    # Where the bytes go: "download" (the HTTP response) or "storage" (an upload to the bucket).
    destination: str = "download"

    def interrupt(self) -> Interrupt | None:
        """Why this dump must stop before its first byte (cancelled, client gone), or None."""
        if self.stop_reason is not None:
            return self.stop_reason
        return (ABORTED, CLIENT_LEFT) if self.client_gone() else None

    def cancel(self, actor: str) -> None:
        """Stop the dump for good: its client gets a broken transfer (or, before the first byte, a status)."""
        if self.stop_reason is None:
            self.stop_reason = (CANCELLED, f"cancelled by {actor}")
        if self.dump is not None:
            self.dump.stop(*self.stop_reason)

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
        self._freed = threading.Condition(self._lock)
        self._running: dict[str, BackupRecord] = {}
        self._finished: OrderedDict[str, BackupRecord] = OrderedDict()
        self.held_by: str | None = None  # a restore running: no dump starts (hold)

    def hold(self, reason: str) -> bool:
        """Refuse every new dump until `release_hold` (a restore runs); False when a dump runs now."""
        with self._lock:
            if self._running or self.held_by is not None:
                return False
            self.held_by = reason
            return True

    def release_hold(self) -> None:
        """Let dumps start again."""
        with self._lock:
            self.held_by = None
            self._freed.notify_all()

    def try_begin(
        self,
        filename: str,
        actor: str,
        backup_id: str | None = None,
        wait_s: float = RELEASE_WAIT_S,
        *,
        alone: bool = False,
        destination: str = "download",
    ) -> BackupRecord | None:
        """Reserve a slot and return its record, or None when `limit` dumps already run.

        When every slot is taken but one's client has gone (its dump is being stopped), wait up to
        `wait_s` for that slot. `backup_id` is the caller's id (random when None); BackupIdInUse if taken.
        `alone`: only when no dump runs at all (a stored backup started by hand waits for nobody).
        """
        deadline = time.monotonic() + wait_s
        with self._lock:
            self._check_unused(backup_id)
            if self.held_by is not None:
                return None
            while len(self._running) >= (1 if alone else self.limit):
                left = deadline - time.monotonic()
                releasing = any(r.client_gone() or r.stop_reason for r in self._running.values())
                if left <= 0 or not releasing:
                    return None
                self._freed.wait(min(left, 0.1))
                self._check_unused(backup_id)
            record = BackupRecord(
                id=backup_id or secrets.token_urlsafe(12), filename=filename, actor=actor, destination=destination
            )
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
            self._freed.notify_all()

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
        if not progress.end(REFUSED, error):
            progress.error = progress.error or error

    def _check_unused(self, backup_id: str | None) -> None:
        if backup_id is not None and (backup_id in self._running or backup_id in self._finished):
            raise BackupIdInUse(backup_id)

    def _keep(self, record: BackupRecord) -> None:
        """Keep a finished record, forgetting the oldest past `keep_n` or `keep_s`; hold the lock."""
        self._finished[record.id] = record
        cutoff = time.time() - self.keep_s
        while self._finished and (
            len(self._finished) > self.keep_n or (next(iter(self._finished.values())).progress.finished or 0) < cutoff
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

    def running(self) -> list[BackupRecord]:
        """The running dumps, oldest first."""
        with self._lock:
            return sorted(self._running.values(), key=lambda r: r.progress.started)

    def at_limit(self) -> bool:
        """Whether a new dump would be refused now (429)."""
        with self._lock:
            return len(self._running) >= self.limit or self.held_by is not None

    def running_count(self) -> int:
        """How many dumps run now."""
        with self._lock:
            return len(self._running)
