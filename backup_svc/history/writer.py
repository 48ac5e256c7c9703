"""Writing events to the bucket off the hot path: `add` only queues; one background thread writes them in
order and keeps trying while the bucket is slow or refuses, so a download or an upload never waits for
the history and never fails because of it.

What could not be written yet stays in memory (and in the merged view); the last problem is kept for
the dashboard and `check`. If the queue ever fills (the bucket has been refusing for a long time), the
oldest waiting events are dropped and counted — the JSON log lines still have every audit entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from backup_svc.timefmt import iso_utc

from .event import HistoryEvent

log = logging.getLogger("backup_svc.history")

# Waiting events held in memory at most (a few hundred bytes each).
MAX_PENDING = 5000
# Written events remembered, so the merged view still shows them when the bucket cannot be read.
RECENT_WRITTEN = 500
# Between failed writes: doubling from FIRST up to LAST, so a bucket that comes back is noticed within half a minute.
FIRST_BACKOFF_S, LAST_BACKOFF_S = 0.5, 30.0


@dataclass(frozen=True)
class WriterStatus:
    """For the dashboard, `/api/v1/audit` and `check`: is the history keeping up?"""

    pending: int
    written: int
    dropped: int
    failing_since: float | None
    last_error: str | None

    @property
    def ok(self) -> bool:
        return self.failing_since is None and self.dropped == 0

    def as_dict(self) -> dict:
        return {
            "pending": self.pending,
            "written": self.written,
            "dropped": self.dropped,
            "ok": self.ok,
            "failing_since": iso_utc(self.failing_since) if self.failing_since else None,
            "last_error": self.last_error,
        }

    def problem(self) -> str | None:
        """One sentence when events are not reaching the bucket (None when all is well)."""
        parts = []
        if self.failing_since is not None:
            parts.append(
                f"{self.pending} history event(s) not yet written to the bucket, failing since "
                f"{iso_utc(self.failing_since)}: {self.last_error}"
            )
        if self.dropped:
            parts.append(
                f"{self.dropped} event(s) were dropped because {MAX_PENDING} were waiting (the log still has them)"
            )
        return "; ".join(parts) or None


class HistoryWriter:
    """The queue of events on their way to the bucket and the thread that writes them."""

    def __init__(self, put: Callable[[HistoryEvent], None], *, max_pending: int = MAX_PENDING):
        self._put = put
        self._pending: deque[HistoryEvent] = deque()
        self._recent: deque[HistoryEvent] = deque(maxlen=RECENT_WRITTEN)
        self._max = max_pending
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._written = self._dropped = 0
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._busy = False
        self._stop = threading.Event()

    def add(self, event: HistoryEvent) -> None:
        """Queue `event`; returns at once whatever the bucket does."""
        with self._cond:
            if len(self._pending) >= self._max:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(event)
            self._cond.notify()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="history-writer", daemon=True)
                self._thread.start()

    def unwritten(self) -> list[HistoryEvent]:
        """Events recorded in this process that are not in the bucket yet, oldest first."""
        with self._cond:
            return list(self._pending)

    def recently_written(self) -> list[HistoryEvent]:
        with self._cond:
            return list(self._recent)

    def status(self) -> WriterStatus:
        with self._cond:
            return WriterStatus(len(self._pending), self._written, self._dropped, self._failing_since, self._last_error)

    def flush(self, timeout_s: float, *, failing_s: float | None = None) -> bool:
        """Wait until every queued event is written (for a command that exits next); True if so.

        With `failing_s`, give up sooner once writes have been failing that long: a command whose
        bucket refuses is not kept waiting for the whole `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                failing = (
                    self._failing_since is not None
                    and failing_s is not None
                    and time.time() - self._failing_since > failing_s
                )
                if left <= 0 or failing:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._stop.set()
            self._cond.notify_all()

    def _work(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._pending:
                    return
                event = self._pending[0]
                self._busy = True
            try:
                self._put(event)
            except Exception as exc:  # a storage error, or a bug: the event stays first in line
                with self._cond:
                    self._busy = False
                    if self._failing_since is None:
                        self._failing_since = time.time()
                        log.error("history: cannot write to the bucket (events are kept and retried): %s", exc)
                    self._last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self._cond.notify_all()
                if self._stop.wait(backoff):  # new events do not cut the wait short; stop() does
                    return
                backoff = min(backoff * 2, LAST_BACKOFF_S)
                continue
            backoff = FIRST_BACKOFF_S
            with self._cond:
                if self._pending and self._pending[0] is event:
                    self._pending.popleft()
                self._recent.append(event)
                self._written += 1
                self._busy = False
                if self._failing_since is not None:
                    log.warning("history: writing to the bucket works again")
                self._failing_since = None
                self._cond.notify_all()
