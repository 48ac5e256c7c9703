"""The dumps running in this process: the concurrency limit and what progress pages read."""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .pipeline import DumpProgress


@dataclass
class BackupRecord:
    """One backup attempt as the registry remembers it."""

    id: str
    filename: str
    actor: str
    progress: DumpProgress = field(default_factory=DumpProgress)


class BackupRegistry:
    """At most `limit` dumps at once; finished ones are kept for `keep_s` seconds (at most `keep_n`)."""

    def __init__(self, limit: int, keep_s: float = 3600, keep_n: int = 50):
        self.limit = limit
        self.keep_s = keep_s
        self.keep_n = keep_n
        self._lock = threading.Lock()
        self._running: dict[str, BackupRecord] = {}
        self._finished: OrderedDict[str, BackupRecord] = OrderedDict()

    def try_begin(self, filename: str, actor: str) -> BackupRecord | None:
        """Reserve a slot and return its record, or None when `limit` dumps already run."""
        with self._lock:
            if len(self._running) >= self.limit:
                return None
            record = BackupRecord(id=secrets.token_urlsafe(12), filename=filename, actor=actor)
            self._running[record.id] = record
            return record

    def end(self, record: BackupRecord) -> None:
        """Free the record's slot (idempotent) and keep the record for later look-ups."""
        with self._lock:
            if self._running.pop(record.id, None) is None:
                return
            self._finished[record.id] = record
            cutoff = time.time() - self.keep_s
            while self._finished and (
                len(self._finished) > self.keep_n
                or (next(iter(self._finished.values())).progress.finished or 0) < cutoff
            ):
                self._finished.popitem(last=False)

    def get(self, backup_id: str) -> BackupRecord | None:
        """The running or recently finished backup with this id."""
        with self._lock:
            return self._running.get(backup_id) or self._finished.get(backup_id)

    def running_count(self) -> int:
        """How many dumps run now."""
        with self._lock:
            return len(self._running)
