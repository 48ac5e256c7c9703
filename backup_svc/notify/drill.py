"""Restore drills: prove a stored backup restores by restoring it into a fresh scratch database.

The drill creates `backup_svc_drill_<UTC time>_<random>` on RESTORE_DRILL_URL's server, streams the
backup into it with the `restore` path (psql, ON_ERROR_STOP, one transaction, the file checked as
it goes), compares every table's row count with the counts recorded at dump time, and drops the
scratch database again on every path. It never touches the database RESTORE_DRILL_URL names (that
one is only the maintenance connection) and refuses to run when that is the backed-up database.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO, Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from backup_svc.crypto.common import IdentityNeeded, WrongIdentity
from backup_svc.dump.rowcount import RowCounts, count_rows, counts_from_metadata
from backup_svc.files.psqlfeed import RestoreFailed, psql_command, stream_into_psql
from backup_svc.files.reader import BackupReader, BadBackup
from backup_svc.files.restore import choose_psql, create_database, inspect_target
from backup_svc.files.scan import DumpScanner
from backup_svc.notify.common import DRILL, FAILED, OK, Event
from backup_svc.notify.drillbounds import (
    LEFTOVER_AGE,
    SCRATCH_PREFIX,
    DrillTimedOut,
    drop_leftovers,
    drop_scratch,
    run_with_deadline,
    terminate_sessions,
)
from backup_svc.notify.settings import same_database
from backup_svc.pg.binaries import find_binaries
from backup_svc.pg.command import keepalive_params, with_keepalives
from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.diagnose import error_lines
from backup_svc.pg.scrub import scrub
from backup_svc.timefmt import utc_now

__all__ = ["SCRATCH_PREFIX", "DrillReport", "run_drill"]
Opener = Callable[[], BinaryIO]

# Every table COPY can have written data for, by catalog name (what the dump's scanner reports).
_TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
"""


class DrillRefused(Exception):
    """The drill must not run against this target; the message says why."""


@dataclass
class DrillReport:
    """How one drill went: what was restored where, how long it took, what the counts said."""

    name: str
    outcome: str = FAILED
    started: datetime = field(default_factory=utc_now)
    finished: datetime | None = None
    seconds: float = 0.0
    scratch: str = ""
    server_version: str = ""
    tables: int = 0
    rows: int = 0
    counts_from: str = ""  # "dump-time metadata" or "the backup's own COPY data"
    mismatches: list[str] = field(default_factory=list)
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    scratch_left: str | None = None  # why the scratch database could not be dropped (a later drill drops it)

    def event(self, database: str) -> Event:
        """The notification for this drill."""
        return Event(
            kind=DRILL,
            outcome=self.outcome,
            database=database,
            name=self.name,
            bytes=self.bytes,
            sha256=self.sha256,
            error=self.error,
            started=self.started,
            finished=self.finished,
            details={
                "seconds": round(self.seconds, 1),
                "tables": self.tables,
                "rows": self.rows,
                "scratch_database": self.scratch,
                "counts_from": self.counts_from,
                **({"scratch_left": self.scratch_left} if self.scratch_left else {}),
            },
        )

    def as_dict(self) -> dict:
        """For the API and the dashboard ("last proven restorable")."""
        payload = self.event("").payload()
        return {
            **payload["details"],
            "name": self.name,
            "outcome": self.outcome,
            "error": self.error,
            "started": payload["started"],
            "finished": payload["finished"],
            "mismatches": self.mismatches,
        }


def with_database(conn: ConnInfo, dbname: str) -> ConnInfo:
    """The same server and user, another database."""
    parts = urlsplit(conn.uri)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"])
    uri = urlunsplit(parts._replace(path="/" + quote(dbname, safe=""), query=query))
    return replace(conn, uri=uri, dbname=dbname)


def scratch_name(when: datetime) -> str:
    """`backup_svc_drill_20261128_193000_1a2b`: sortable, and never the name of a real database."""
    return f"{SCRATCH_PREFIX}{when:%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


def _connect(conn: ConnInfo, timeout_s: int) -> psycopg.Connection:
    try:
        return psycopg.connect(
            conn.uri,
            password=conn.password,
            connect_timeout=timeout_s,
            application_name="backup_svc-drill",
            autocommit=True,
            **keepalive_params(conn.uri),
        )  # a frozen link ends the session
    except psycopg.Error as exc:
        raise RestoreFailed(
            f"cannot connect to the drill server ({conn.host}): {scrub(error_lines(str(exc)), conn.password)}"
        ) from None


def _header(path: str, opener: Opener | None) -> tuple[str, str]:
    """The pg_dump version and the encoding in the backup's header (its first chunk is enough)."""
    scanner = DumpScanner()
    chunks = iter(BackupReader(path, opener))
    try:
        scanner.feed(next(chunks, b""))
    finally:
        chunks.close()
    return scanner.pg_dump_version or "", scanner.encoding or ""


def restored_counts(conn: ConnInfo, tables: list[tuple[str, str]], timeout_s: int) -> dict[tuple[str, str], int | None]:
    """count(*) of each (schema, table) (ONLY that table, as COPY wrote it) in the restored database; None if absent."""
    with _connect(conn, timeout_s) as db:
        present = {tuple(row) for row in db.execute(_TABLES_SQL)}
        counts: dict[tuple[str, str], int | None] = {}
        for name in tables:
            if name not in present:
                counts[name] = None
                continue
            query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(*name))
            counts[name] = db.execute(query).fetchone()[0]
    return counts


def compare(expected: RowCounts, actual: dict[tuple[str, str], int | None]) -> list[str]:
    """One line per table whose restored rows differ from what was recorded."""
    problems = []
    for (schema, table), want in sorted(expected.items()):
        got = actual.get((schema, table))
        if got is None:
            problems.append(f"{schema}.{table}: missing after the restore (expected {want} rows)")
        elif got != want:
            problems.append(f"{schema}.{table}: {got} rows restored, {want} recorded at dump time")
    return problems


def _drop(maintenance: ConnInfo, scratch: str, timeout_s: int) -> None:
    with _connect(maintenance, timeout_s) as db:
        drop_scratch(db, scratch)


def _drop_leftovers(maintenance: ConnInfo, timeout_s: int, say: Callable[[str], None]) -> None:
    try:
        with _connect(maintenance, timeout_s) as db:
            drop_leftovers(db, utc_now(), say)
    except (psycopg.Error, RestoreFailed) as exc:  # the drill itself says what is wrong with the server
        say(
            f"warning: could not look for leftover scratch databases: {scrub(error_lines(str(exc)), maintenance.password)}"
        )


def run_drill(
    path: str,
    name: str,
    drill: ConnInfo,
    *,
    source: ConnInfo | None = None,
    opener: Opener | None = None,
    size: int | None = None,
    metadata: dict[str, str] | None = None,
    bin_dirs: list[str],
    timeout_s: int = 10,
    say: Callable[[str], None] = lambda _: None,
    deadline_s: float | None = None,
) -> DrillReport:
    """Restore the backup at `path` (called `name`) into a fresh scratch database and check its rows.

    `opener` reads the bytes from elsewhere than the file `path` (a stored object; `path` is then its
    s3:// URL), `size` is their length, `metadata` the object's user metadata (the row counts recorded
    at dump time). `deadline_s` bounds the whole drill (RESTORE_DRILL_TIMEOUT, drillbounds.py). Never
    raises for a failed drill: the report's `outcome` and `error` say what went wrong.
    """
    report = DrillReport(name=name, sha256=(metadata or {}).get("sha256"))
    if deadline_s is None:
        return _run_drill(report, path, name, drill, source, opener, size, metadata, bin_dirs, timeout_s, say)

    def stop_sessions() -> None:
        if report.scratch:
            with _connect(drill, timeout_s) as db:
                terminate_sessions(db, report.scratch)

    clock = time.monotonic()
    try:
        return run_with_deadline(
            lambda: _run_drill(report, path, name, drill, source, opener, size, metadata, bin_dirs, timeout_s, say),
            deadline_s,
            stop_sessions,
        )
    except DrillTimedOut:
        late = DrillReport(
            name=name,
            sha256=report.sha256,
            started=report.started,
            scratch=report.scratch,
            bytes=report.bytes,
            server_version=report.server_version,
        )
        late.error = f"the drill did not finish within {deadline_s:g} s (RESTORE_DRILL_TIMEOUT) and was stopped" + (
            f"; its scratch database {report.scratch!r} is dropped by the next drill if it is left"
            if report.scratch
            else ""
        )
        late.finished = utc_now()
        late.seconds = time.monotonic() - clock
        return late


def _run_drill(
    report: DrillReport,
    path: str,
    name: str,
    drill: ConnInfo,
    source: ConnInfo | None,
    opener: Opener | None,
    size: int | None,
    metadata: dict[str, str] | None,
    bin_dirs: list[str],
    timeout_s: int,
    say: Callable[[str], None],
) -> DrillReport:
    clock = time.monotonic()
    secret = drill.password
    try:
        if source is not None and same_database(drill, source):
            raise DrillRefused("RESTORE_DRILL_URL points at the backed-up database; refusing to restore there")
        expected, total_rows, total_tables = counts_from_metadata(metadata or {})
        report.counts_from = "dump-time metadata" if expected is not None else "the backup's own COPY data"
        _drop_leftovers(drill, timeout_s, say)
        report.scratch = scratch_name(report.started)
        scratch = with_database(drill, report.scratch)
        dumped_by, encoding = _header(path, opener)
        # with the backup's encoding, as `restore --create` does
        try:
            created = create_database(scratch, timeout_s, encoding, maintenance=drill.dbname)
        except RestoreFailed as exc:
            raise RestoreFailed(
                f"cannot create the scratch database on the drill server ({drill.host}): {exc}"
            ) from None
        say(f"{created.replace('created database', 'created scratch database', 1)} on {drill.host}")
        try:
            target = inspect_target(scratch, timeout_s)
            report.server_version = target.version
            psql, warning = choose_psql(target, dumped_by, find_binaries("psql", bin_dirs))
            if warning:
                say(f"warning: {warning}")
            if expected is None:  # an object stored without counts: read them from its own SQL first
                expected = count_rows(BackupReader(path, opener))
            report.bytes = size if size is not None else os.path.getsize(path)
            say(f"restoring {name} with {psql.path} ({psql.version}) ...")
            # keepalives and tcp_user_timeout: psql on a link that dies fails instead of waiting for ever
            linked = replace(scratch, uri=with_keepalives(scratch.uri, psql.major))
            stream_into_psql(
                path, psql_command(psql.path, linked, target.version_num), secrets=(secret,), opener=opener
            )
            actual = restored_counts(scratch, list(expected), timeout_s)
            report.tables = len(expected)
            report.rows = sum(v for v in actual.values() if v is not None)
            report.mismatches = compare(expected, actual)
            if total_rows is not None and sum(expected.values()) != total_rows:
                report.mismatches.append(
                    f"the per-table counts add up to {sum(expected.values())} rows, the recorded total is {total_rows}"
                )
            if total_tables is not None and len(expected) != total_tables:
                report.mismatches.append(f"{len(expected)} tables counted, {total_tables} recorded at dump time")
        finally:
            try:
                _drop(drill, report.scratch, timeout_s)
                say(f"dropped scratch database {report.scratch!r}")
            except (psycopg.Error, RestoreFailed) as exc:
                report.scratch_left = (
                    f"{scrub(error_lines(str(exc)), secret)}; a later drill drops it once it is "
                    f"{LEFTOVER_AGE.total_seconds() / 3600:g} h old"
                )
                say(f"warning: could not drop scratch database {report.scratch!r}: {report.scratch_left}")
        if report.mismatches:
            shown = "; ".join(report.mismatches[:3])
            more = f" (and {len(report.mismatches) - 3} more)" if len(report.mismatches) > 3 else ""
            report.error = f"row counts differ after the restore: {shown}{more}"
        else:
            report.outcome = OK
    except (DrillRefused, RestoreFailed) as exc:
        report.error = scrub(str(exc), secret)
    except BadBackup as exc:
        # an encrypted backup without (the right) key is not damaged: say what is missing
        keyless = isinstance(exc.__cause__, (IdentityNeeded, WrongIdentity))
        report.error = f"the drill needs the private key: {exc}" if keyless else f"the backup is damaged: {exc}"
    except psycopg.Error as exc:
        report.error = f"database error during the drill: {scrub(error_lines(str(exc)), secret)}"
    except Exception as exc:  # e.g. storage failing mid-read: a drill reports, it never raises
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        report.error = f"the drill stopped: {scrub(reason.splitlines()[0], secret)}"
    report.finished = utc_now()
    report.seconds = time.monotonic() - clock
    return report
