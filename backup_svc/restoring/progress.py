"""One restore's progress as pages and scripts read it: state, phase, bytes, tables, time left."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from backup_svc.timefmt import iso_utc

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
# The phases in order; a replace adds "swapping" before "done".
PHASES = ("privileges", "checking", "creating", "restoring", "comparing", "swapping")
# Share of the whole each phase is shown as (the check reads the object once, the restore applies it).
_SPAN = {
    "privileges": (0, 1),
    "checking": (1, 30),
    "creating": (30, 31),
    "restoring": (31, 95),
    "comparing": (95, 98),
    "swapping": (98, 100),
}


class Cancelled(Exception):
    """Someone cancelled the restore before its swap."""


@dataclass
class RestoreProgress:
    """Mutable record of one restore; its worker thread writes it, readers call `as_json`."""

    id: str
    backup: str
    mode: str  # "new" or "replace"
    database: str  # the live database
    target: str  # the database restored into
    actor: str
    state: str = RUNNING
    phase: str = "privileges"
    object_size: int | None = None
    checked_bytes: int = 0
    bytes_applied: int = 0
    bytes_total: int | None = None
    tables_done: int = 0
    tables_total: int | None = None
    rows: int | None = None
    counts_from: str = ""
    kept_as: str | None = None
    closed_s: float | None = None  # how long the live database refused connections (replace)
    error: str | None = None
    warning: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    phase_started: float = field(default_factory=time.monotonic)
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    def enter(self, phase: str) -> None:
        """Start `phase`; raise Cancelled when a cancel came first (never once swapping began)."""
        if self.cancel_requested.is_set() and phase != "swapping":
            raise Cancelled()
        self.phase, self.phase_started = phase, time.monotonic()

    def check_cancel(self) -> None:
        if self.cancel_requested.is_set() and self.phase != "swapping":
            raise Cancelled()

    def cancellable(self) -> bool:
        return self.state == RUNNING and self.phase != "swapping"

    def end(self, state: str, error: str | None = None) -> None:
        self.state, self.error, self.finished = state, error, time.time()
        if state == DONE:
            self.phase = "done"

    def _phase_fraction(self) -> float:
        if self.phase == "checking" and self.object_size:
            return min(1.0, self.checked_bytes / self.object_size)
        if self.phase == "restoring" and self.bytes_total:
            return min(1.0, self.bytes_applied / self.bytes_total)
        return 0.0

    def seconds_left(self) -> float | None:
        """Time left in this phase at its rate so far (checking and restoring; None before a rate is known)."""
        fraction = self._phase_fraction()
        spent = time.monotonic() - self.phase_started
        if self.state != RUNNING or fraction <= 0.01 or spent < 1:
            return None
        return spent * (1 - fraction) / fraction

    def as_json(self) -> dict:
        """The contract's fields (state, phase, percent, bytes, tables, target, kept_as, error) and more."""
        if self.state == DONE:
            percent = 100.0
        else:
            low, high = _SPAN.get(self.phase, (0, 0))
            percent = low + (high - low) * self._phase_fraction()
        left = self.seconds_left()
        return {
            "id": self.id,
            "backup": self.backup,
            "mode": self.mode,
            "database": self.database,
            "state": self.state,
            "phase": self.phase,
            "percent": round(percent, 1),
            "bytes_applied": self.bytes_applied,
            "bytes_total": self.bytes_total,
            "checked_bytes": self.checked_bytes,
            "object_size": self.object_size,
            "tables_done": self.tables_done,
            "tables_total": self.tables_total,
            "rows": self.rows,
            "counts_from": self.counts_from,
            "target": self.target,
            "kept_as": self.kept_as,
            "downtime_s": round(self.closed_s, 3) if self.closed_s is not None else None,
            "error": self.error,
            "warning": self.warning,
            "actor": self.actor,
            "started": iso_utc(self.started),
            "finished": iso_utc(self.finished) if self.finished else None,
            "elapsed_s": round((self.finished or time.time()) - self.started, 1),
            "seconds_left": round(left) if left is not None else None,
            "cancellable": self.cancellable(),
        }
