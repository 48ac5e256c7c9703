"""Reading the history back from the bucket: day folders newest first, event bodies read once and kept
(an event never changes, so a body read is good for ever), pages going back in time.

`refresh()` runs in the background in `serve` (HistoryRefresher) and keeps the newest events at hand, so
the dashboard never waits for the bucket; `page()` is for `/api/v1/audit` and `history`, which may go
further back and wait (within their own deadline).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from .bucket import HistoryBucket
from .event import HistoryEvent, day_folder, parse_name

# Newest events the background refresh keeps read (the dashboard's window: recent attempts, last failure,
# drills, notification problems).
WARM_EVENTS = 1000
# Event bodies kept in memory at most (a few hundred bytes each).
MAX_BODIES = 20000
# A full listing of the day folders (events may land late in an older day: a process that could not
# write for a while) every so often; in between only today's and yesterday's folders are listed.
FULL_LISTING_S = 600
FETCH_WORKERS = 4
# How far back a full refresh looks for events written late.
LATE_WRITES = timedelta(days=7)


class BucketHistory:
    """The events in the bucket as this process last read them. Thread-safe."""

    def __init__(self, bucket: HistoryBucket, *, warm: int = WARM_EVENTS):
        self.bucket = bucket
        self.warm = warm
        self._lock = threading.Lock()
        self._days: list[str] | None = None  # newest first
        self._days_at = 0.0
        self._names: dict[str, list[str]] = {}  # day -> names, oldest first
        self._bodies: OrderedDict[str, HistoryEvent | None] = OrderedDict()  # None: unreadable
        self._pool = ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="history-read")
        self._sorted: tuple[int, list[HistoryEvent]] = (-1, [])  # (bodies' version, newest first)
        self._version = 0
        self.loaded = False
        self.error: str | None = None
        self.refreshed_at: float | None = None

    # -- listing -------------------------------------------------------------------------------------
    def _day_list(self, now: datetime, full: bool) -> list[str]:
        if full or self._days is None:
            days = self.bucket.days()
            with self._lock:
                self._days, self._days_at = days, time.monotonic()
                self._names = {d: n for d, n in self._names.items() if d in days}
        recent = {day_folder(now), day_folder(now - timedelta(days=1))}
        with self._lock:
            self._days = sorted(set(self._days or []) | recent, reverse=True)
            return list(self._days)

    def _day_names(self, day: str, fresh: bool) -> list[str]:
        with self._lock:
            cached = self._names.get(day)
        if cached is not None and not fresh:
            return cached
        names = self.bucket.names(day)
        with self._lock:
            self._names[day] = names
        return names

    def names_before(
        self, before: datetime | None, limit: int, *, now: datetime | None = None, full: bool = False
    ) -> list[str]:
        """The newest `limit` event names older than `before` (None: all), newest first. StorageError."""
        now = now or datetime.now(timezone.utc)
        recent = {day_folder(now), day_folder(now - timedelta(days=1))}
        full = full or self._days is None or time.monotonic() - self._days_at > FULL_LISTING_S
        # a full refresh lists the last week's folders again (a process that could not write for a while
        # writes its events late, under their own days); older folders once read are taken as they were
        late = day_folder(now - LATE_WRITES)
        found: list[str] = []
        last_day = day_folder(before) if before is not None else None
        for day in self._day_list(now, full):
            if last_day is not None and day > last_day:
                continue
            names = self._day_names(day, fresh=day in recent or (full and day >= late))
            for name in reversed(names):
                facts = parse_name(name)
                if before is None or facts.time < before:
                    found.append(name)
            if len(found) >= limit:
                break
        return found[:limit]

    # -- bodies --------------------------------------------------------------------------------------
    def _fetch(self, name: str) -> HistoryEvent | None:
        try:
            return self.bucket.get(name)
        except ValueError:
            return None  # not JSON: `history --check` reports it; views skip it

    def bodies(self, names: list[str]) -> list[HistoryEvent]:
        """The events called `names` (read from the bucket when not read before), in the same order."""
        with self._lock:
            missing = [n for n in names if n not in self._bodies]
        for name, event in zip(missing, self._pool.map(self._fetch, missing)):
            with self._lock:
                self._bodies[name] = event
                self._version += 1
        with self._lock:
            out = []
            for name in names:
                if name in self._bodies:
                    self._bodies.move_to_end(name)
                    if self._bodies[name] is not None:
                        out.append(self._bodies[name])
            while len(self._bodies) > MAX_BODIES:
                self._bodies.popitem(last=False)
                self._version += 1
            return out

    def page(self, before: datetime | None, limit: int) -> list[HistoryEvent]:
        """The newest `limit` events older than `before`, newest first (reads the bucket). StorageError."""
        return self.bodies(self.names_before(before, limit))

    # -- kept warm in the background -----------------------------------------------------------------
    def refresh(self) -> None:
        """Read the newest `warm` events (only new ones are fetched); errors are kept in `error`."""
        try:
            self.page(None, self.warm)
        except Exception as exc:
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        self.error, self.loaded, self.refreshed_at = None, True, time.time()

    def cached(self) -> list[HistoryEvent]:
        """Every event read so far, newest first; never touches the network."""
        with self._lock:
            version, ordered = self._sorted
            if version == self._version:
                return ordered
            version = self._version
            events = [e for e in self._bodies.values() if e is not None]
        ordered = sorted(events, key=lambda e: e.name, reverse=True)
        with self._lock:
            self._sorted = (version, ordered)
        return ordered
