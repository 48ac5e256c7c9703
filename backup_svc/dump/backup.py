"""One backup, start to finish: name it, check the server, pick pg_dump, run it, write it to a sink."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Callable

from backup_svc.dump.options import DumpOptions
from backup_svc.dump.attempt import DumpProgress, Interrupt
from backup_svc.dump.invocation import pg_dump_command
from backup_svc.dump.pipeline import INTERRUPT_POLL_S, DumpInterrupted, GzipDump
from backup_svc.pg.binaries import PgBinary, choose_pg_dump, find_binaries
from backup_svc.pg.facts import ServerFacts, server_facts


def backup_filename(prefix: str, when: datetime | None = None, *, encrypted: bool = False) -> str:
    """`<prefix>_backup_<YYYYMMDD_HHMMSS>.sql.gz`, UTC; with `.age` after it when `encrypted` (age)."""
    when = when or datetime.now(timezone.utc)
    return f"{prefix}_backup_{when.astimezone(timezone.utc):%Y%m%d_%H%M%S}.sql.gz" + (".age" if encrypted else "")


def open_dump(
    options: DumpOptions,
    installed: list[PgBinary],
    *,
    application_name: str,
    progress: DumpProgress | None = None,
    interrupt: Callable[[], Interrupt | None] | None = None,
    created: Callable[[GzipDump], None] | None = None,
    count_rows: bool = False,
    sha256: bool = True,
) -> tuple[GzipDump, ServerFacts, PgBinary]:
    """Check the server, pick pg_dump and start it; return once its first byte is out.

    Raises CannotDump (with a secret-free message) for everything that fails before that byte, and
    DumpInterrupted as soon as `interrupt()` (asked every fraction of a second, also while the
    server's facts are fetched) gives a reason to stop. `created` gets the dump before it starts, so
    another thread can stop() it.
    `count_rows` makes the dump count each table's rows (`progress.table_rows`) as they pass; `sha256=False`
    leaves the output's sha256 to a caller that hashes it itself (its CRC32 is always in `progress.crc32`).
    """
    facts = _until_interrupted(
        lambda: server_facts(options.conn, timeout_s=options.connect_timeout_s), interrupt, progress
    )
    pg_dump = choose_pg_dump(facts, installed)
    command = pg_dump_command(
        pg_dump.path,
        options.conn,
        application_name=application_name,
        lock_timeout_s=options.lock_timeout_s,
        connect_timeout_s=options.connect_timeout_s,
        server_version_num=facts.version_num,
        client_major=pg_dump.major,
    )
    dump = GzipDump(
        command,
        level=options.gzip_level,
        secrets=(options.conn.password,),
        progress=progress,
        stall_timeout_s=options.stall_timeout_s,
        # before its first byte pg_dump may also wait up to BACKUP_LOCK_TIMEOUT for its locks
        first_byte_timeout_s=options.stall_timeout_s + options.lock_timeout_s,
        hints={"role": facts.role or options.conn.user, "table_count": facts.table_count},
        count_rows=count_rows,
        sha256=sha256,
    )
    if created is not None:
        created(dump)
    dump.start(interrupt)
    return dump, facts, pg_dump


def _until_interrupted(
    query: Callable[[], ServerFacts], interrupt: Callable[[], Interrupt | None] | None, progress: DumpProgress | None
) -> ServerFacts:
    """`query()`, given up on (DumpInterrupted) as soon as `interrupt()` says so.

    The query runs in a helper thread; one that is given up on ends by itself within its own
    time limits (connect_timeout, the query's Deadline) and its answer is dropped.
    """
    if interrupt is None:
        return query()
    result: list = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(query())
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)
        done.set()

    threading.Thread(target=run, name="dump-facts", daemon=True).start()
    while not done.wait(INTERRUPT_POLL_S):
        reason = interrupt()
        if reason is not None:
            if progress is not None:
                progress.end(*reason)
            raise DumpInterrupted(*reason)
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


@dataclass(frozen=True)
class BackupWritten:
    """What `write_backup` produced: the server and pg_dump it used, and the bytes' size and SHA-256."""

    facts: ServerFacts
    pg_dump: PgBinary
    gzip_bytes: int
    sql_bytes: int
    sha256: str  # "" when the dump was asked not to hash (write_backup's sha256=False)
    seconds: float
    table_rows: dict[tuple[str, str], int] | None = None  # with count_rows: rows per (schema, table)
    crc32: int | None = None  # the bytes' CRC32


def write_backup(
    options: DumpOptions,
    sink: BinaryIO,
    *,
    application_name: str,
    installed: list[PgBinary] | None = None,
    progress: DumpProgress | None = None,
    count_rows: bool = False,
    interrupt: Callable[[], Interrupt | None] | None = None,
    created: Callable[[GzipDump], None] | None = None,
    sha256: bool = True,
) -> BackupWritten:
    """Take one backup and write its gzip bytes to `sink.write`, the same bytes a download sends.

    Returns only when pg_dump succeeded and its output was complete; raises CannotDump before the
    first byte and DumpBroken (or whatever the sink raised) after it. The caller decides what a
    partial result means for its sink (delete the file, abort the upload); pg_dump is always stopped.
    `interrupt` and `created` are open_dump's: ways for another thread to stop the dump.
    """
    started = time.monotonic()
    installed = find_binaries("pg_dump", options.pg_bin_dirs) if installed is None else installed
    dump, facts, pg_dump = open_dump(
        options,
        installed,
        application_name=application_name,
        progress=progress,
        count_rows=count_rows,
        interrupt=interrupt,
        created=created,
        sha256=sha256,
    )
    try:
        for chunk in dump:
            sink.write(chunk)
    finally:
        dump.close()
    done = dump.progress
    return BackupWritten(
        facts=facts,
        pg_dump=pg_dump,
        gzip_bytes=done.gzip_bytes,
        sql_bytes=done.sql_bytes,
        sha256=done.sha256 or "",
        seconds=time.monotonic() - started,
        table_rows=done.table_rows,
        crc32=done.crc32,
    )
