"""What the database says about a running dump: catalog estimates and PostgreSQL's COPY progress.

Knows nothing of Flask. The database is asked only when someone polls, and rarely: the catalog once
per dump, `pg_stat_progress_copy` at most twice a second per dump however many pages poll.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import psycopg

from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.diagnose import CannotDump
from backup_svc.pg.facts import Deadline, connect

log = logging.getLogger(__name__)

# Two samples of pg_stat_progress_copy a second: the server runs seconds ahead of the download, and a
# table it finishes between two samples is estimated less well. One tiny query each; the dump never notices.
SAMPLE_INTERVAL_S = 0.5
# While the table being read has no sample yet, ask this often: its COPY may end any moment.
EAGER_SAMPLE_INTERVAL_S = 0.1
# A progress query must never queue behind a migration's lock request (and so hold up a page).
LOCK_TIMEOUT_MS = 200
CONNECT_TIMEOUT_S = 3
# pg_stat_progress_copy exists from PostgreSQL 14 on.
COPY_PROGRESS_SINCE = 140000

# Tables pg_dump writes data for: ordinary tables (partitions included), not those of extensions.
_TABLES_SQL = """
SELECT format('%s.%s', n.nspname, c.relname), c.oid::bigint, {size},
       -- never analyzed (reltuples -1): the statistics system's count of live rows, kept since the inserts
       CASE WHEN c.reltuples > 0 THEN c.reltuples ELSE coalesce(s.n_live_tup, -1) END::float8
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
"""
# pg_table_size (heap + TOAST) needs a lock; relpages (as of the last VACUUM/ANALYZE) does not.
_EXACT_SIZE = "pg_table_size(c.oid)"
_CATALOG_SIZE = (
    "(c.relpages + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0))"
    "::bigint * current_setting('block_size')::bigint"
)

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
    rows: float  # reltuples, else the live rows counted since the inserts; negative when unknown


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
        # The latest sample of each table: the server runs ahead of the output that has been read,
        # so the table being read may be one whose COPY has already ended.
        self.samples: dict[int, CopySample] = {}
        self.copy_supported = False
        self._sampled_at = 0.0
        self._lock = threading.Lock()

    def missing_sample(self, table: str | None) -> bool:
        """Whether `table` (schema.name) has data but no COPY sample yet: worth asking sooner."""
        estimate = self.tables.get(table) if self.tables is not None and table is not None else None
        return estimate is not None and self.copy_supported and estimate.oid not in self.samples

    def refresh(
        self, conn: ConnInfo, application_name: str, now: float | None = None, *, interval_s: float = SAMPLE_INTERVAL_S
    ) -> None:
        """Load the catalog estimates (once) and sample COPY progress, unless that was done under a second ago.

        Never waits for another poller's query: whoever finds one running uses the last sample.
        Failures are logged and leave the coarser estimates in place.
        """
        now = time.monotonic() if now is None else now
        if now - self._sampled_at < interval_s or not self._lock.acquire(blocking=False):
            return
        try:
            if now - self._sampled_at < interval_s:
                return
            self._sampled_at = now
            # A stalled link must not hold a page's request thread: the queries get a deadline too.
            with connect(conn, timeout_s=CONNECT_TIMEOUT_S, purpose="progress") as db, Deadline(db, CONNECT_TIMEOUT_S):
                if self.tables is None:
                    self.copy_supported = db.info.server_version >= COPY_PROGRESS_SINCE
                    self.tables = load_estimates(db)
                self.copy = sample_copy(db, application_name) if self.copy_supported else None
                if self.copy is not None:
                    self.samples[self.copy.relid] = self.copy
        except (CannotDump, psycopg.Error) as exc:
            log.warning("progress estimate unavailable: %s", getattr(exc, "message", None) or type(exc).__name__)
        finally:
            self._lock.release()
