"""One dump attempt as everyone else sees it: what it has done so far (`DumpProgress`, written by the
running dump, read by the progress API, the dashboard and the audit) and how it ended (`DumpProgress.end`
with one of OUTCOMES). Knows nothing of pg_dump or HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from backup_svc.pg.diagnose import ABORTED, CANCELLED, FAILED

# How a dump attempt ended (DumpProgress.outcome): it completed; pg_dump or the service failed; its client
# went away; someone cancelled it; it was turned away (busy, or the database refused) before it started.
OK = "ok"
REFUSED = "refused"
OUTCOMES = (OK, FAILED, ABORTED, CANCELLED, REFUSED)

# What `interrupt()` returns when a dump must stop: (ABORTED or CANCELLED, a message for the audit trail).
Interrupt = tuple[str, str]


@dataclass
class DumpProgress:
    """What a running dump has done so far; written by the dump, read by anyone. It ends through `end`."""

    started: float = field(default_factory=time.time)
    phase: str = "connecting"
    current_table: str | None = None
    tables_done: int = 0
    tables: list[str] = field(default_factory=list)  # every table whose data has started, in order
    table_sql_start: int = 0  # sql_bytes when the current table's data started
    sql_bytes: int = 0
    gzip_bytes: int = 0
    finished: float | None = None
    outcome: str | None = None  # one of OUTCOMES once ended
    error: str | None = None
    sha256: str | None = None  # hex digest of the gzip bytes sent; set only when the dump completed
    crc32: int | None = None  # their CRC32 (always: a cheap cross-check for whoever stores them); set likewise
    # rows per (schema, table) as written, when the dump was asked to count them (stored backups)
    table_rows: dict[tuple[str, str], int] | None = None

    def end(self, outcome: str, error: str | None = None, *, overrule: bool = False) -> bool:
        """End the attempt with `outcome` (one of OUTCOMES) and `error`; its phase becomes the outcome
        ("done" for OK). An attempt that has ended already keeps its ending (False) unless `overrule`:
        a later finding replaces it (the dump completed, but its client or its upload did not)."""
        if self.outcome is not None and not overrule:
            return False
        self.outcome, self.error = outcome, error
        self.phase = "done" if outcome == OK else outcome
        self.finished = time.time()
        return True
