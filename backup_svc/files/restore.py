"""`restore`: put a verified backup into a database with psql, all or nothing.

Order: the cheap up-front checks (the container's header, pg_dump's header lines, the encoding —
the first chunks only), check the target is empty, then stream the file into a psql of the target's
major with ON_ERROR_STOP and --single-transaction. The file is verified while it streams (gzip CRC,
completion line) and psql is killed before it sees the end of its input if anything is wrong, so it
never sends COMMIT; a database --create made is then dropped. One pass over the file, not two
(issue 25: the separate verify pass cost 5.7-7 s of a 42 s restore at 1.5 GB).

A caller that must refuse a file on something only a full read tells (`check`: a stored object's
recorded sha256) still gets the full verify pass first, before anything is touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

import psycopg
from psycopg import sql

from backup_svc.pg.conninfo import ConnInfo, parse_database_url
from backup_svc.files.psqlfeed import RestoreFailed, psql_command, stream_into_psql
from backup_svc.files.verify import VerifyReport, read_header, verify_file
from backup_svc.files.parallel.restore import restore_in_parallel
from backup_svc.pg.binaries import (
    IncompatibleServer,
    PgBinary,
    find_binaries,
    pick_binary,
)
from backup_svc.pg.command import keepalive_params, version_tuple
from backup_svc.pg.diagnose import error_lines
from backup_svc.pg.scrub import scrub

# Relations a restore would collide with: tables, views, materialized views, foreign tables,
# sequences, outside the system schemas and not created by an extension (e.g. PostGIS's tables).
_TARGET_SQL = """
SELECT current_setting('server_version_num')::int,
       split_part(current_setting('server_version'), ' ', 1),
       count(c.oid),
       (array_agg(format('%I.%I', n.nspname, c.relname) ORDER BY n.nspname, c.relname))[1:3]
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype = 'e')
"""


@dataclass(frozen=True)
class TargetFacts:
    """The target server's version and what the target database already holds."""

    version_num: int
    version: str
    relations: int
    examples: list[str]


@dataclass(frozen=True)
class RestoreReport:
    """What a finished restore did."""

    backup: VerifyReport
    database: str
    server_version: str
    psql: PgBinary
    seconds: float

    def summary(self, source: str) -> str:
        """The one line a finished restore of `source` (a file or an s3:// URL) ends with."""
        backup = self.backup
        return (
            f"restored {source} into {self.database!r} (PostgreSQL {self.server_version}) in "
            f"{self.seconds:.1f} s: {backup.tables_with_data} tables with data, {backup.sql_bytes} bytes of SQL "
            f"dumped from PostgreSQL {backup.server_version} by pg_dump {backup.pg_dump_version}"
        )


def _connect(conn: ConnInfo, dbname: str, timeout_s: int) -> psycopg.Connection:
    try:
        return psycopg.connect(
            conn.uri,
            dbname=dbname,
            password=conn.password,
            connect_timeout=timeout_s,
            application_name="backup_svc-restore",
            autocommit=True,
            **keepalive_params(conn.uri),
        )
    except psycopg.Error as exc:
        raise RestoreFailed(
            f"cannot connect to the target ({dbname}): {scrub(error_lines(str(exc)), conn.password)}"
        ) from None


def create_database(conn: ConnInfo, timeout_s: int, encoding: str = "", *, maintenance: str = "postgres") -> str:
    """CREATE DATABASE <target> through the server's `maintenance` database (`postgres`); say how.

    The target gets the dump's `encoding` (the source database's): a LATIN1 or SQL_ASCII dump
    restored into a UTF8 database would change its encoding, or fail on bytes that are not UTF-8.
    When that encoding differs from template1's, the database is made from template0, in the
    server's default locale or, where that locale cannot hold the encoding, in locale C.
    """
    name = sql.Identifier(conn.dbname)
    with _connect(conn, maintenance, timeout_s) as db:
        try:
            default = db.execute(
                "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'template1'"
            ).fetchone()[0]
            if not encoding or encoding.upper() == default.upper():
                db.execute(sql.SQL("CREATE DATABASE {}").format(name))
                return f"created database {conn.dbname!r} ({default})"
            if pg_char_to_encoding(db, encoding) < 0:
                raise RestoreFailed(
                    f"the backup's encoding {encoding!r} is unknown to the target server; "
                    f"create the database yourself and leave out --create"
                )
            create = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {}").format(name, sql.Literal(encoding))
            try:
                db.execute(create)
                return f"created database {conn.dbname!r} with the backup's encoding {encoding}"
            except psycopg.errors.InvalidParameterValue:  # the default locale cannot hold this encoding
                db.execute(create + sql.SQL(" LC_COLLATE 'C' LC_CTYPE 'C'"))
                return (
                    f"created database {conn.dbname!r} with the backup's encoding {encoding} and locale C "
                    f"(the server's default locale cannot hold {encoding})"
                )
        except psycopg.errors.DuplicateDatabase:
            raise RestoreFailed(
                f"database {conn.dbname!r} already exists; leave out --create to restore into it"
            ) from None
        except psycopg.Error as exc:
            raise RestoreFailed(
                f"cannot create database {conn.dbname!r}: {scrub(str(exc).strip(), conn.password)}"
            ) from None


def pg_char_to_encoding(db: psycopg.Connection, encoding: str) -> int:
    """The server's number for an encoding name; -1 for a name it does not know."""
    return db.execute("SELECT pg_char_to_encoding(%s)", (encoding,)).fetchone()[0]


def inspect_target(conn: ConnInfo, timeout_s: int) -> TargetFacts:
    """The target's server version and the user relations it already holds."""
    with _connect(conn, conn.dbname, timeout_s) as db:
        try:
            version_num, version, relations, examples = db.execute(_TARGET_SQL).fetchone()
        except psycopg.Error as exc:
            raise RestoreFailed(f"cannot inspect the target: {scrub(str(exc).strip(), conn.password)}") from None
    return TargetFacts(version_num, version, relations, examples or [])


def choose_psql(target: TargetFacts, dumped_by: str, installed: list[PgBinary]) -> tuple[PgBinary, str | None]:
    """The psql for the target's major (as pg_dump is chosen), moved up to one at least as new as the
    pg_dump that wrote the file when one is installed; with a warning when none is."""
    try:
        chosen = pick_binary(target.version_num, target.version, installed)
    except IncompatibleServer:
        have = ", ".join(b.version for b in installed) or "none"
        raise RestoreFailed(
            f"no installed psql can restore into PostgreSQL {target.version} (installed: "
            f"{have}); install postgresql-client-{target.version.split('.')[0]} "
            f"or set PG_BIN_DIRS"
        ) from None
    needed = version_tuple(dumped_by)
    if version_tuple(chosen.version) >= needed:
        return chosen, None
    newer = [b for b in installed if version_tuple(b.version) >= needed]
    if newer:
        return min(newer, key=lambda b: b.major), None
    return chosen, (
        f"psql {chosen.version} is older than the pg_dump {dumped_by} that wrote the file; "
        f"if the restore fails on '\\restrict', install a newer postgresql-client"
    )


def drop_created_database(conn: ConnInfo, timeout_s: int, *, maintenance: str = "postgres") -> str:
    """Drop the database `create_database` made for a restore that then failed; one line saying what happened."""
    try:
        with _connect(conn, maintenance, timeout_s) as db:
            drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(conn.dbname))
            if db.info.server_version >= 130000:  # a stopped restore's sessions may still be ending
                drop += sql.SQL(" WITH (FORCE)")
            db.execute(drop)
    except psycopg.Error as exc:
        return (
            f"warning: could not drop database {conn.dbname!r}, which --create made: "
            f"{scrub(error_lines(str(exc)), conn.password)}; drop it before retrying"
        )
    return f"dropped database {conn.dbname!r}, which --create made, so that a retry can create it again"


def restore_file(
    path: str,
    target_url: str,
    *,
    bin_dirs: list[str],
    force: bool = False,
    create: bool = False,
    timeout_s: int = 10,
    say: Callable[[str], None] = lambda _: None,
    opener: Callable[[], BinaryIO] | None = None,
    check: Callable[[VerifyReport], None] | None = None,
    jobs: int = 1,
) -> RestoreReport:
    """Restore `path` into `target_url` in one transaction, verifying it; RestoreFailed/BadBackup say why not.

    `say` gets a line at each step (checked, created, restoring with which psql, warnings). `opener`
    reads the bytes from elsewhere (a stored object). `check` may refuse the verified backup (raise
    BadBackup) before the target is touched: it asks for a full verify pass first (the file is read
    twice); without it the file is read once, verified while it is restored.

    `jobs` > 1 with `create`: the data and index builds run on that many connections
    (backup_svc/files/parallel); into an existing database the restore stays one transaction.
    """
    try:
        conn = parse_database_url(target_url)
    except ValueError as exc:
        raise RestoreFailed(f"--target-url {exc}") from None
    started = time.monotonic()
    if check is None:
        backup = read_header(path, opener)
        say(
            f"checked the start of {path}: dumped from PostgreSQL {backup.server_version} by pg_dump "
            f"{backup.pg_dump_version}; the rest is verified while it is restored"
        )
    else:
        backup = verify_file(path, opener)
        check(backup)
        say(
            f"verified {path} in {time.monotonic() - started:.1f} s: {backup.size} bytes, "
            f"{backup.tables_with_data} tables with data, dumped from PostgreSQL {backup.server_version}"
        )
    if not create:
        if jobs > 1:
            say(
                f"--jobs {jobs}: the target database exists (no --create), so the restore stays serial, in one "
                f"transaction that a failure rolls back"
            )
        return _restore_into(
            path, conn, backup, bin_dirs=bin_dirs, force=force, timeout_s=timeout_s, say=say, opener=opener
        )
    say(create_database(conn, timeout_s, backup.encoding))
    try:
        return _restore_into(
            path, conn, backup, bin_dirs=bin_dirs, force=force, timeout_s=timeout_s, say=say, opener=opener, jobs=jobs
        )
    except BaseException:
        say(drop_created_database(conn, timeout_s))  # the retry must not find it "already exists"
        raise


def _restore_into(
    path: str,
    conn: ConnInfo,
    backup: VerifyReport,
    *,
    bin_dirs: list[str],
    force: bool,
    timeout_s: int,
    say: Callable[[str], None],
    opener: Callable[[], BinaryIO] | None,
    jobs: int = 1,
) -> RestoreReport:
    target = inspect_target(conn, timeout_s)
    if target.relations and not force:
        raise RestoreFailed(
            f"the target database {conn.dbname!r} is not empty: it holds {target.relations} tables, views or "
            f"sequences (e.g. {', '.join(target.examples)}); a restore drops and replaces every object the "
            f"backup contains. Restore into an empty database (--create makes one), or pass --force"
        )
    psql, warning = choose_psql(target, backup.pg_dump_version, find_binaries("psql", bin_dirs))
    if warning:
        say(f"warning: {warning}")
    if target.relations:
        say(f"--force: restoring over {target.relations} existing tables, views or sequences")
    started = time.monotonic()
    if jobs > 1:
        say(
            f"restoring into {conn.uri} (PostgreSQL {target.version}) on {jobs} connections, with "
            f"{psql.path} ({psql.version}) for the schema ..."
        )
        backup = restore_in_parallel(path, conn, psql.path, target.version_num, jobs, opener=opener, say=say)
    else:
        say(f"restoring into {conn.uri} (PostgreSQL {target.version}) with {psql.path} ({psql.version}) ...")
        backup = stream_into_psql(
            path, psql_command(psql.path, conn, target.version_num), secrets=(conn.password,), opener=opener
        )
    return RestoreReport(
        backup=backup,
        database=conn.dbname,
        server_version=target.version,
        psql=psql,
        seconds=time.monotonic() - started,
    )
