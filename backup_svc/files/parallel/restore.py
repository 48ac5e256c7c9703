"""`restore FILE --create --jobs N`: a plain pg_dump script restored into the new database it was
created for, its table data and index builds on N connections, verified as it streams.

Order, as pg_restore -j keeps it (postgres/postgres src/bin/pg_dump/pg_backup_archiver.c):
1. pre-data (the schema, large-object ids) streamed to one psql, one transaction, committed when
   the first table data is reached;
2. each table's COPY rows in jobs of about 4 MiB on N connections (each job its own COPY and
   transaction; a big table is loaded by all of them), large-object data streamed to one more psql;
3. after every row is in: each CREATE INDEX and index-backed constraint on N connections;
4. once the whole file has been read and verified (gzip CRC and length, pg_dump's completion line):
   everything else (sequence values, foreign keys, triggers, attachments, comments, materialized
   view data, …) in dump order on one psql in one transaction.

Any failure — a job's error, a session killed, a bad file, Ctrl-C — stops every session; the caller
drops the database it created. Memory: at most 2N+1 jobs of rows (N queued, N being sent, one being
filled; each ≤ 4 MiB + one 1 MiB chunk, more only for a row longer than that), plus the statements of
step 4 (the schema's size, not the data's).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from typing import BinaryIO, Callable

from backup_svc.files.psqlfeed import RestoreFailed, psql_command
from backup_svc.files.reader import BackupReader
from backup_svc.files.scan import DumpScanner
from backup_svc.files.verify import VerifyReport, report_of
from backup_svc.pg.command import ClientCommand, start_client
from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.scrub import scrub

from .pool import POLL_S, Job, WorkerPool
from .script import NotSplittable, ScriptSplitter

Say = Callable[[str], None]


class PsqlSession:
    """One psql fed a script through its stdin; `finish` ends its input and raises RestoreFailed if it failed."""

    def __init__(self, command: ClientCommand, what: str, secrets: tuple[str | None, ...]) -> None:
        self.what, self.secrets = what, secrets
        try:
            # Started by the thread that runs the restore: it dies with it (pg/command.py).
            self.proc = start_client(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise RestoreFailed(f"psql could not be started: {exc.strerror}") from None
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._reader = threading.Thread(
            target=lambda: self.stderr.extend(raw.decode("utf-8", "replace").rstrip("\n") for raw in self.proc.stderr),
            daemon=True,
        )
        self._reader.start()

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            self.finish()  # psql stopped at an error: say which
            raise RestoreFailed(f"psql stopped reading {self.what}") from None

    def finish(self, tick: Callable[[], None] = lambda: None) -> None:
        """End the input (psql commits now), wait for psql; RestoreFailed with its error if it failed.

        `tick` runs every POLL_S while psql works: what it raises (a cancel) ends the wait."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        while True:
            try:
                returncode = self.proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                tick()
        self._reader.join(timeout=5)
        self.proc.stderr.close()
        if returncode != 0:
            errors = [line for line in self.stderr if "ERROR:" in line or "FATAL:" in line or "error:" in line]
            detail = (errors or list(self.stderr) or [f"psql exited with status {returncode}"])[-1].strip()
            raise RestoreFailed(f"{self.what} failed: {scrub(detail, *self.secrets)}")

    def kill(self) -> None:
        # Only a psql still running: one that ended and was waited for has given up its pid, and with
        # it the id of its process group, which another process may hold by now.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._reader.join(timeout=5)  # it reads to the end first: closing under it would raise in its thread
        for pipe in (self.proc.stdin, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass


class ParallelRun:
    """The sink of ScriptSplitter: where each section of the script runs."""

    def __init__(self, conn: ConnInfo, psql: str, server_version_num: int, jobs: int, say: Say) -> None:
        self.conn, self.psql, self.version_num, self.jobs, self.say = conn, psql, server_version_num, jobs, say
        self.splitter = ScriptSplitter(self)
        self.pre: PsqlSession | None = None
        self.large: PsqlSession | None = None
        self.pool: WorkerPool | None = None
        self.tail: list[tuple[tuple[bytes, ...], bytes]] = []
        self.sessions: list[PsqlSession] = []
        self.phase_started = time.monotonic()
        self.counts = collections.Counter()
        # Run while it waits for the connections or a psql (a cancel raises from it): the file's
        # chunks no longer pace it then, and index builds and the last step can take long.
        self.tick: Callable[[], None] = lambda: None

    def _psql(self, what: str, *, single_transaction: bool) -> PsqlSession:
        command = psql_command(self.psql, self.conn, self.version_num, single_transaction=single_transaction)
        session = PsqlSession(command, what, (self.conn.password,))
        self.sessions.append(session)
        return session

    def _phase(self, line: str) -> None:
        now = time.monotonic()
        self.say(f"{line} ({now - self.phase_started:.1f} s)")
        self.phase_started = now

    # -- the sink ------------------------------------------------------------------------------
    def pre_data(self, text: bytes) -> None:
        if self.pre is None:
            self.pre = self._psql("the schema (pre-data)", single_transaction=True)
        self.pre.write(text)

    def data_begins(self) -> None:
        self._finish_pre()
        self.pool = WorkerPool(self.conn, self.jobs)

    def copy_rows(self, table: str, statement: bytes, rows: list[bytes], settings: tuple[bytes, ...]) -> None:
        self.counts["copy"] += 1
        self.pool.submit(Job(f"COPY of {table}", statement, tuple(rows), settings))

    def large_objects(self, text: bytes, settings: tuple[bytes, ...]) -> None:
        if self.large is None:
            self.large = self._psql("the large objects' data", single_transaction=False)
            self.large.write(self._start_of_session(settings))
        self.large.write(text)

    def post_data_begins(self) -> None:
        self.pool.wait_done(self.tick)
        if self.large is not None:
            self.large.finish(self.tick)
        self._phase(
            f"table data loaded on {self.jobs} connections: {self.counts['copy']} COPY jobs"
            + (", large objects" if self.large is not None else "")
        )

    def parallel(self, what: str, statement: bytes, settings: tuple[bytes, ...]) -> None:
        self.counts["parallel"] += 1
        self.pool.submit(Job(what, statement, None, settings))

    def serial(self, text: bytes, settings: tuple[bytes, ...]) -> None:
        self.tail.append((settings, text))

    # -- phases --------------------------------------------------------------------------------
    def _start_of_session(self, settings: tuple[bytes, ...]) -> bytes:
        restrict = [self.splitter.restrict] if self.splitter.restrict else []
        return b"\n".join([*restrict, *settings]) + b"\n"

    def _finish_pre(self) -> None:
        if self.pre is not None:
            self.pre.finish(self.tick)
            self.pre = None
            self._phase("schema restored (pre-data, one transaction)")

    def check(self) -> None:
        """RestoreFailed as soon as a job failed on any connection."""
        if self.pool is not None:
            self.pool.raise_failure()

    def finish(self) -> None:
        """After the file was verified: the rest of the data, the index builds, then the serial statements."""
        self._finish_pre()  # a script without table data ran whole in that one session
        if self.pool is not None:
            if self.splitter.section == "data":
                self.post_data_begins()
            self.pool.wait_done(self.tick)
            self.pool.make_durable()
            self.pool.close()
            self._phase(f"{self.counts['parallel']} indexes and constraints built on {self.jobs} connections")
        if not self.tail:
            return
        session = self._psql("the statements after the indexes", single_transaction=True)
        session.write(self._start_of_session(()))
        applied: set[bytes] = set()
        for settings, text in self.tail:
            session.write(b"".join(line + b"\n" for line in settings if line not in applied) + text)
            applied = set(settings)
        session.finish(self.tick)
        self._phase(f"{len(self.tail)} further statements run in dump order (one transaction)")

    def abort(self) -> None:
        """Stop every session at once (nothing more may commit); the caller drops the database."""
        for session in self.sessions:
            session.kill()
        if self.pool is not None:
            self.pool.close(abort=True)


def restore_in_parallel(
    path: str,
    conn: ConnInfo,
    psql: str,
    server_version_num: int,
    jobs: int,
    *,
    opener: Callable[[], BinaryIO] | None = None,
    say: Say = lambda _: None,
    watch: Callable[[DumpScanner], None] | None = None,
) -> VerifyReport:
    """Restore the plain dump `path` into the new, empty database `conn` on `jobs` connections.

    `watch` sees the scanner after each chunk (SQL bytes, COPY statements so far), and every POLL_S
    while the restore waits for its connections or a psql; whatever it raises (a cancel) stops the
    restore as a failure does.

    Returns what the pass found in the file (as `verify`); raises RestoreFailed or BadBackup, after
    stopping every session — the caller drops the database.
    """
    run = ParallelRun(conn, psql, server_version_num, jobs, say)
    reader, scanner = BackupReader(path, opener), DumpScanner()
    if watch is not None:
        run.tick = lambda: watch(scanner)
    try:
        for chunk in reader:
            scanner.check(chunk)
            run.splitter.feed(chunk)
            run.check()
            if watch is not None:
                watch(scanner)
        run.splitter.finish()
        report = report_of(path, reader, scanner)  # BadBackup before the last statements run
        run.finish()
    except NotSplittable as exc:
        run.abort()
        raise RestoreFailed(f"--jobs cannot split this script: {exc}; restore it without --jobs") from None
    except BaseException:
        run.abort()
        raise
    return report
