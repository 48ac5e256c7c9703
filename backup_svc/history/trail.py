"""This process's history: events are recorded here (to memory and, with storage, to the bucket through
the background writer) and read back as one merged view — the bucket's events plus this process's
events that are not written yet — newest first.

Without storage the history is this process's memory only (and the JSON log lines): it does not
survive a restart, and `durable` says so for the dashboard.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import datetime, timezone
from typing import Callable

from backup_svc.storage.bounded import BoundedCalls

from .bucket import HistoryBucket
from .event import HistoryEvent, RunChain, parse_name
from .reader import BucketHistory
from .writer import HistoryWriter

log = logging.getLogger("backup_svc.history")

# Events kept in memory when there is no bucket (and the newest written ones when there is).
MEMORY_EVENTS = 500
# What a reader of /api/v1/audit or `history` waits for the bucket at most.
READ_DEADLINE_S = 8
MAX_LIMIT = 500

Predicate = Callable[[HistoryEvent], bool]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-04T10:00:00Z`, with or without fraction or zone; no zone means UTC)."""
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class History:
    """Record events; read the merged history. `record` never raises and never waits for the bucket."""

    def __init__(self, process: str, bucket: HistoryBucket | None = None):
        self.chain = RunChain(process)
        self.bucket = bucket
        self.writer = HistoryWriter(bucket.put) if bucket is not None else None
        self.reader = BucketHistory(bucket) if bucket is not None else None
        self._memory: deque[HistoryEvent] = deque(maxlen=MEMORY_EVENTS)
        self._lock = threading.Lock()
        self._calls = BoundedCalls(workers=2)
        self.version = 0  # counts recorded events: a page showing them knows when to render again

    @property
    def durable(self) -> bool:
        return self.bucket is not None

    def record(self, kind: str, type_: str, data: dict, when: datetime | None = None) -> HistoryEvent | None:
        """Add one event (see event.py for kinds); returns at once."""
        try:
            event = self.chain.make(kind, type_, data, when or datetime.now(timezone.utc))
        except Exception:  # the history must never break what it records
            log.exception("history: could not record a %s event", type_)
            return None
        with self._lock:
            self._memory.append(event)
            self.version += 1
        if self.writer is not None:
            self.writer.add(event)
        return event

    def flush(self, timeout_s: float, *, failing_s: float | None = None) -> bool:
        """Wait for the writer (a command about to exit); True when everything reached the bucket."""
        return self.writer is None or self.writer.flush(timeout_s, failing_s=failing_s)

    def status(self) -> dict:
        """Where the history lives and whether it keeps up (dashboard, /api/v1/audit, check)."""
        if self.bucket is None:
            return {
                "durable": False,
                "where": "memory",
                "problem": None,
                "note": "Kept in this process's memory only: lost on restart or redeploy (BACKUP_STORAGE_URL "
                "is not set). The log has every entry.",
            }
        writer = self.writer.status()
        read_error = self.reader.error
        problems = [
            p
            for p in (
                writer.problem(),
                f"the history could not be read from the bucket: {read_error}" if read_error else None,
            )
            if p
        ]
        return {
            "durable": True,
            "where": self.bucket.url,
            "writer": writer.as_dict(),
            "loaded": self.reader.loaded,
            "problem": "; ".join(problems) or None,
            "note": "Kept in the bucket: it survives restarts and redeploys, and shows every process's events.",
        }

    # -- reading --------------------------------------------------------------------------------------
    def _local(self) -> list[HistoryEvent]:
        """This process's events the bucket may not show yet (all of them without a bucket)."""
        if self.writer is None:
            with self._lock:
                return list(self._memory)
        return self.writer.unwritten() + self.writer.recently_written()

    @staticmethod
    def _merge(*groups: list[HistoryEvent]) -> list[HistoryEvent]:
        seen: dict[str, HistoryEvent] = {}
        for group in groups:
            for event in group:
                seen.setdefault(event.name, event)
        return sorted(seen.values(), key=lambda e: (e.time, e.name), reverse=True)

    def cached(self, where: Predicate = lambda e: True) -> list[HistoryEvent]:
        """The merged view from what is already at hand, newest first; never waits for the bucket."""
        from_bucket = self.reader.cached() if self.reader is not None else []
        return [e for e in self._merge(self._local(), from_bucket) if where(e)]

    def page(
        self,
        before: datetime | None,
        limit: int,
        where: Predicate = lambda e: True,
        *,
        tag: str = "all",
        deadline_s: float = READ_DEADLINE_S,
    ) -> tuple[list[HistoryEvent], str | None]:
        """The newest `limit` events older than `before` that satisfy `where` (`tag` names that filter: equal
        requests in flight are joined), reading the bucket as far back as needed within `deadline_s`;
        (events, None) or (what could be had, the problem)."""
        limit = max(1, min(limit, MAX_LIMIT))
        iso_before = before.isoformat(timespec="milliseconds").replace("+00:00", "Z") if before else None
        local = [e for e in self._local() if where(e) and (iso_before is None or e.time < iso_before)]
        error = None
        from_bucket: list[HistoryEvent] = []
        if self.reader is not None:
            try:
                from_bucket = self._calls.call(
                    ("page", iso_before, limit, tag),
                    lambda: self._walk(before, limit, where),
                    deadline_s,
                    f"the history in {self.bucket.url}",
                )
            except Exception as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                from_bucket = [
                    e for e in self.reader.cached() if where(e) and (iso_before is None or e.time < iso_before)
                ]
        return self._merge(local, from_bucket)[:limit], error

    def _walk(self, before: datetime | None, limit: int, where: Predicate) -> list[HistoryEvent]:
        wanted: list[HistoryEvent] = []
        cursor = before
        batch_size = max(limit * 2, 100)
        while len(wanted) < limit:
            names = self.reader.names_before(cursor, batch_size)
            if not names:
                break
            batch = self.reader.bodies(names)
            wanted += [e for e in batch if where(e)]
            if len(names) < batch_size:
                break
            cursor = parse_name(names[-1]).time
        return wanted
