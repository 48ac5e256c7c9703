"""How far a running dump has got: catalog estimates, PostgreSQL's COPY progress, and the report pages poll.

Knows nothing of Flask. The database is asked only when someone polls, and rarely: the catalog once
per dump, `pg_stat_progress_copy` at most once a second per dump however many pages poll.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg

from .config import ConnInfo
from .database import connect
from .diagnose import CannotDump
from .pipeline import DumpProgress

log = logging.getLogger(__name__)

# One sample of pg_stat_progress_copy a second is plenty for a progress bar and costs the dump nothing.
SAMPLE_INTERVAL_S = 1.0
# A progress query must never queue behind a migration's lock request (and so hold up a page).
LOCK_TIMEOUT_MS = 200
CONNECT_TIMEOUT_S = 3
# pg_stat_progress_copy exists from PostgreSQL 14 on.
COPY_PROGRESS_SINCE = 140000
# An empty or unmeasured table still takes a moment to dump: weigh it as one 8 KiB page.
MIN_TABLE_BYTES = 8192
# Share of the bar before and after the table data (catalog and schema, then indexes and constraints).
SCHEMA_PERCENT, DATA_PERCENT = 1.0, 98.0
# Never claim more of a table than this before pg_dump has moved on from it.
MAX_TABLE_FRACTION = 0.99

# Tables pg_dump writes data for: ordinary tables (partitions included), not those of extensions.
_TABLES_SQL = """
SELECT format('%s.%s', n.nspname, c.relname), c.oid::bigint, {size}, c.reltuples::float8
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
"""
# pg_table_size (heap + TOAST) needs a lock; relpages (as of the last VACUUM/ANALYZE) does not.
_EXACT_SIZE = "pg_table_size(c.oid)"
_CATALOG_SIZE = ("(c.relpages + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0))"
                 "::bigint * current_setting('block_size')::bigint")

_COPY_SQL = """
SELECT p.relid::bigint, p.bytes_processed, p.tuples_processed
  FROM pg_stat_progress_copy p JOIN pg_stat_activity a ON a.pid = p.pid
 WHERE a.application_name = %s
"""


@dataclass(frozen=True)
class TableEstimate:
    """What the catalog says about one table before its data is dumped."""

    oid: int
    size_bytes: int
    rows: float  # reltuples: negative (or 0) when the table was never analyzed


@dataclass(frozen=True)
class CopySample:
    """One reading of pg_stat_progress_copy for the dump's session."""

    relid: int
    bytes_processed: int
    tuples_processed: int


def load_estimates(db: psycopg.Connection) -> dict[str, TableEstimate]:
    """Size and row estimates of every table pg_dump will dump, keyed as pg_dump's --verbose names them."""
    db.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    try:
        rows = db.execute(_TABLES_SQL.format(size=_EXACT_SIZE)).fetchall()
    except psycopg.errors.LockNotAvailable:  # a table is locked exclusively: settle for the catalog's view
        rows = db.execute(_TABLES_SQL.format(size=_CATALOG_SIZE)).fetchall()
    return {name: TableEstimate(oid, size, rows) for name, oid, size, rows in rows}


def sample_copy(db: psycopg.Connection, application_name: str) -> CopySample | None:
    """The COPY the dump's session is running now, if any."""
    row = db.execute(_COPY_SQL, (application_name,)).fetchone()
    return CopySample(*row) if row else None


class DumpWatch:
    """What the database said about one dump, refreshed lazily, at most once per SAMPLE_INTERVAL_S."""

    def __init__(self) -> None:
        self.tables: dict[str, TableEstimate] | None = None
        self.copy: CopySample | None = None
        self.copy_supported = False
        self._sampled_at = 0.0
        self._lock = threading.Lock()

    def refresh(self, conn: ConnInfo, application_name: str, now: float | None = None) -> None:
        """Load the catalog estimates (once) and sample COPY progress, unless that was done under a second ago.

        Never waits for another poller's query: whoever finds one running uses the last sample.
        Failures are logged and leave the coarser estimates in place.
        """
        now = time.monotonic() if now is None else now
        if now - self._sampled_at < SAMPLE_INTERVAL_S or not self._lock.acquire(blocking=False):
            return
        try:
            if now - self._sampled_at < SAMPLE_INTERVAL_S:
                return
            self._sampled_at = now
            with connect(conn, timeout_s=CONNECT_TIMEOUT_S, purpose="progress") as db:
                if self.tables is None:
                    self.copy_supported = db.info.server_version >= COPY_PROGRESS_SINCE
                    self.tables = load_estimates(db)
                self.copy = sample_copy(db, application_name) if self.copy_supported else None
        except (CannotDump, psycopg.Error) as exc:
            log.warning("progress estimate unavailable: %s", getattr(exc, "message", None) or type(exc).__name__)
        finally:
            self._lock.release()


def data_fraction(progress: DumpProgress, tables: dict[str, TableEstimate],
                  copy: CopySample | None) -> tuple[float, str]:
    """How much of the table data is written (0–1), and how the current table's share was estimated.

    Tables count by their size on disk. Within the table being dumped: rows copied out of the
    estimated rows (pg_stat_progress_copy), else bytes copied out of its size; without COPY progress,
    the SQL written so far against the sizes (coarser: text is not the size on disk).
    """
    weights = {name: max(t.size_bytes, MIN_TABLE_BYTES) for name, t in tables.items()}
    started = list(progress.tables)
    current = progress.current_table if progress.phase == "data" else None
    finished = started[:-1] if current is not None and started else started
    done = sum(weights.get(name, MIN_TABLE_BYTES) for name in finished)
    current_weight = weights.get(current, MIN_TABLE_BYTES) if current is not None else 0
    # Tables the catalog did not list (an extension's configuration table) still count.
    total = max(sum(weights.values()), done + current_weight, 1)
    if current is None:
        return min(done / total, 1.0), "tables"
    estimate = tables.get(current)
    if copy is not None and estimate is not None and copy.relid == estimate.oid:
        if estimate.rows > 0:
            share, method = copy.tuples_processed / estimate.rows, "copy-rows"
        else:
            share, method = copy.bytes_processed / current_weight, "copy-bytes"
    else:
        share, method = (progress.sql_bytes - done) / current_weight, "output-bytes"
    share = min(max(share, 0.0), MAX_TABLE_FRACTION)
    return (done + share * current_weight) / total, method


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z") if ts else None


def progress_report(record_id: str, filename: str, progress: DumpProgress, *, running: bool, status: int,
                    watch: DumpWatch, now: float | None = None) -> dict:
    """The JSON-ready state of one backup attempt (see docs/api.md)."""
    now = time.time() if now is None else now
    state = _state(progress, running, status)
    phase = progress.phase if state != "running" or progress.phase in ("connecting", "schema", "data") else "finishing"
    tables = watch.tables
    percent, method = _percent(state, phase, progress, tables, watch.copy)
    elapsed = max((progress.finished if state != "running" and progress.finished else now) - progress.started, 0.0)
    eta = None
    if state == "running" and percent is not None and percent >= SCHEMA_PERCENT and elapsed >= 1:
        eta = round(elapsed * (100 - percent) / percent, 1)
    if tables is not None:
        table_count = max(len(tables), len(progress.tables))
    else:  # never polled while running: once it has ended, what pg_dump dumped is the count
        table_count = len(progress.tables) if state != "running" else None
    table = None
    if phase == "data" and progress.current_table is not None:
        table = {"name": progress.current_table, "number": len(progress.tables), "count": table_count}
    return {
        "id": record_id,
        "filename": filename,
        "state": state,
        "phase": phase,
        "status": status,
        "error": progress.error if state != "done" else None,
        "percent": percent,
        "estimate": method,
        "eta_s": eta,
        "table": table,
        "tables_done": progress.tables_done,
        "table_count": table_count,
        "bytes_sent": progress.gzip_bytes,
        "sql_bytes": progress.sql_bytes,
        "rate_bytes_per_s": round(progress.gzip_bytes / elapsed) if elapsed > 0 else None,
        "elapsed_s": round(elapsed, 1),
        "started_at": _iso(progress.started),
        "finished_at": _iso(progress.finished) if state != "running" else None,
    }


def _state(progress: DumpProgress, running: bool, status: int) -> str:
    if status != 200:
        return "refused"
    if progress.outcome in ("failed", "aborted"):
        return progress.outcome  # at once, even before the broken response is closed
    # "done" only once the response is closed: the whole file, trailer included, has been sent.
    if running:
        return "running"
    return "done" if progress.outcome == "ok" else "aborted"


def _percent(state: str, phase: str, progress: DumpProgress, tables: dict[str, TableEstimate] | None,
             copy: CopySample | None) -> tuple[float | None, str | None]:
    if state == "done":
        return 100.0, None
    if state != "running":
        return None, None
    if phase == "connecting":
        return 0.0, None
    if phase == "schema":
        return SCHEMA_PERCENT, None
    if phase == "finishing":
        return SCHEMA_PERCENT + DATA_PERCENT, None
    if tables is None:
        return None, None  # no estimates (yet): the page shows an indeterminate bar
    fraction, method = data_fraction(progress, tables, copy)
    return round(SCHEMA_PERCENT + DATA_PERCENT * fraction, 1), method
