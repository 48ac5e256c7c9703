"""pg_dump → gzip as an iterator of bytes (`GzipDump`): pg_dump run and watched (first byte, stalls, stops,
clean-up on every path), its output compressed and hashed, a dump pg_dump did not finish broken, never
completed. The command it runs is `invocation`'s, the record it keeps is `attempt`'s `DumpProgress`.
Knows nothing of HTTP: the API and the CLI both use it."""

from __future__ import annotations

import collections
import fcntl
import hashlib
import logging
import os
import re
import select
import signal
import subprocess
import threading
import time
from typing import Callable

from isal.isal_zlib import crc32

from backup_svc.dump.attempt import OK, DumpProgress, Interrupt
from backup_svc.dump.completion import INCOMPLETE_REASON, SqlTail
from backup_svc.dump.compression import DEFAULT_LEVEL, SYNC_FLUSH, gzip_compressor
from backup_svc.dump.tabledata import TableDataScanner
from backup_svc.pg.command import ClientCommand, start_client
from backup_svc.pg.diagnose import ABORTED, FAILED, NOT_ANSWERING, CannotDump, diagnose
from backup_svc.pg.scrub import scrub

log = logging.getLogger(__name__)

# pg_dump writes into a pipe; 1 MiB instead of Linux's default 64 KiB keeps it from stalling
# while we compress (measured: a full 64 KiB pipe costs pg_dump ~25 %).
PIPE_SIZE = 1 << 20
# Reads of at most 64 KiB keep the pipe draining steadily (larger reads stall pg_dump).
READ_SIZE = 64 * 1024
# Compressed output is handed on in batches of this size: fewer, larger HTTP chunks.
BATCH_SIZE = 256 * 1024
# When pg_dump is quiet (waiting on a slow query), emit a gzip sync-flush block this often so a
# write reaches the client and a disconnected client is noticed within the 2 s the contract allows.
IDLE_FLUSH_S = 0.5
# How long pg_dump gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_S = 1.0
# While waiting for pg_dump's first byte, how often to ask whether the dump should stop (client gone,
# cancelled): well inside the 2 s the contract gives for stopping pg_dump after a client leaves.
INTERRUPT_POLL_S = 0.2
STALL_REASON = (
    "pg_dump produced no output for {seconds} s (BACKUP_STALL_TIMEOUT): the database stopped "
    "answering or the network link to it stalled"
)

# --verbose lines that follow the table data (sequence values, large objects, indexes, constraints):
# the first of them after the last table's data means the dump is finishing.
_AFTER_DATA = re.compile(r"pg_dump: (executing |creating |processing (?!data for table))")


class DumpBroken(Exception):
    """pg_dump failed after output had started: the stream must be broken, never completed."""


class DumpInterrupted(CannotDump):
    """The dump was stopped on purpose before its first byte: `kind` is ABORTED (the client left) or
    CANCELLED (someone cancelled it); `message` says which."""


class GzipDump:
    """One pg_dump run whose stdout is gzip-compressed in-process and iterated exactly once.

    `start()` blocks until pg_dump has written its first byte (or died, raising CannotDump), so the
    caller can still choose the HTTP status. Iterating yields compressed batches; the gzip trailer is
    written only after pg_dump exited 0 *and* its output ended with the completion line, otherwise
    DumpBroken is raised. The SHA-256 of everything yielded lands in `progress.sha256` at the end (unless
    `sha256` is False: a caller that hashes the bytes itself) and their CRC32 in `progress.crc32`. `close()` stops pg_dump on
    every path and is safe to call more than once; `stop()` (any thread) ends a dump on purpose (cancel,
    a client gone, a stall), and no output for `stall_timeout_s` stops it as a failure.
    """

    def __init__(
        self,
        command: ClientCommand,
        *,
        level: int = DEFAULT_LEVEL,
        secrets: tuple[str | None, ...] = (),
        progress: DumpProgress | None = None,
        stall_timeout_s: float | None = None,
        first_byte_timeout_s: float | None = None,
        hints: dict | None = None,
        count_rows: bool = False,
        sha256: bool = True,
    ):
        self.command = command
        self.count_rows = count_rows
        self.sha256 = sha256
        self.level = level
        self.secrets = secrets
        self.progress = progress if progress is not None else DumpProgress()
        # No output for this long breaks the dump (None: wait for ever); before the first byte the
        # wait may be longer, since pg_dump then also waits for its locks (BACKUP_LOCK_TIMEOUT).
        self.stall_timeout_s = stall_timeout_s
        self.first_byte_timeout_s = first_byte_timeout_s or stall_timeout_s
        self.hints = hints or {}  # role, table_count: make diagnose's advice concrete
        self._stopped: Interrupt | None = None  # why stop() was called
        self._stopped_at = 0.0
        self._proc: subprocess.Popen | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_thread: threading.Thread | None = None
        self._first: bytes = b""
        self._closed = False
        self._data_over = False  # pg_dump said (on stderr) that it has moved past the table data

    # -- starting ---------------------------------------------------------------------------
    def start(self, interrupt: Callable[[], Interrupt | None] | None = None) -> None:
        """Run pg_dump and wait for its first output; raise CannotDump if it exits before that.

        `interrupt` is asked every INTERRUPT_POLL_S while pg_dump connects or waits for locks (the
        slow part, and silent: nothing has been written to the client yet, so nothing else would
        notice a client that left); when it returns a reason, pg_dump is stopped and
        DumpInterrupted raised. No output within `first_byte_timeout_s`: CannotDump (not answering).
        """
        try:
            self._proc = start_client(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise CannotDump("failed", f"pg_dump could not be started: {exc.strerror}") from None
        try:
            fcntl.fcntl(self._proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # an unprivileged process may be capped lower; the default pipe still works
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="pg_dump-stderr", daemon=True)
        self._stderr_thread.start()
        waiting_since = time.monotonic()
        while (first := self._read(timeout=INTERRUPT_POLL_S)) is None:
            if self._stopped is not None:
                self._escalate()
                continue
            reason = interrupt() if interrupt is not None else None
            if reason is not None:
                self.stop(*reason)
                continue
            limit = self.first_byte_timeout_s
            if limit is not None and time.monotonic() - waiting_since > limit:
                self.stop(FAILED, STALL_REASON.format(seconds=f"{limit:g}"))
        if not first:
            returncode = self._proc.wait()
            self._stderr_thread.join(timeout=5)
            self.close()
            if self._stopped is not None:
                kind, message = self._stopped
                failure = DumpInterrupted(kind, message) if kind != FAILED else not_answering_for(message)
                self._finish(kind, failure.message)
                raise failure
            failure = diagnose(
                self.stderr_text() or f"pg_dump exited with status {returncode}", *self.secrets, **self.hints
            )
            self._finish(FAILED, failure.message)
            raise failure
        self._first = first
        if self.progress.phase == "connecting":  # the stderr reader may already have seen table data
            self.progress.phase = "schema"

    def _read(self, timeout: float | None) -> bytes | None:
        """Up to READ_SIZE bytes of pg_dump's output; b"" at EOF; None if nothing came within timeout."""
        fd = self._proc.stdout.fileno()
        if timeout is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return None
        return os.read(fd, READ_SIZE)

    def _read_stderr(self) -> None:
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stderr_tail.append(line)
            # Only the move to "finishing" is read here, and only between tables: which table is
            # dumped comes from the SQL itself (tabledata.py), since stderr prints names raw and a
            # table name can contain a newline and a line that looks like pg_dump's.
            if self.progress.phase == "data" and _AFTER_DATA.match(line):
                self._data_over = True  # stdout may lag behind: the last table may still be in the pipe
                if self.progress.current_table is None:
                    self.progress.phase = "finishing"

    def _table_data_started(self, table: str) -> None:
        progress = self.progress
        progress.phase = "data"
        progress.current_table = table
        progress.tables.append(table)
        progress.table_sql_start = progress.sql_bytes

    def _table_data_ended(self) -> None:
        self.progress.tables_done += 1
        self.progress.current_table = None
        if self._data_over:
            self.progress.phase = "finishing"

    def stderr_text(self) -> str:
        """pg_dump's recent stderr, secrets removed."""
        return scrub("\n".join(self._stderr_tail), *self.secrets)

    # -- streaming --------------------------------------------------------------------------
    def __iter__(self):
        if self._proc is None or self._closed:
            raise RuntimeError("start() the dump before iterating it, and iterate it once")
        compressor = gzip_compressor(self.level)
        digest = hashlib.sha256() if self.sha256 else None  # of the bytes sent, i.e. of the file the client saves
        check = 0  # their CRC32 (ISA-L: ~0.1 ms per MB, where the sha256 costs ~1 ms)
        sql_tail = SqlTail()  # only the end matters for the completion check: no scan of the whole dump
        tables = TableDataScanner(self._table_data_started, self._table_data_ended, count_rows=self.count_rows)
        # Start with the gzip header (a sync flush of nothing): ISA-L, unlike zlib, emits no byte for
        # a small first input, and the first yield must come at once (see below).
        header = compressor.flush(SYNC_FLUSH)
        batch: list[bytes] = [header]
        batched = len(header)
        data: bytes | None = self._first
        self._first = b""
        last_output = time.monotonic()
        while data != b"":
            if data is None:  # pg_dump is quiet: flush so the client (and a disconnect) is noticed
                out = compressor.flush(SYNC_FLUSH)
                quiet_s = time.monotonic() - last_output
                if self._stopped is not None:
                    self._escalate()
                elif self.stall_timeout_s is not None and quiet_s > self.stall_timeout_s:
                    self.stop(FAILED, STALL_REASON.format(seconds=f"{self.stall_timeout_s:g}"))
            else:
                last_output = time.monotonic()
                self.progress.sql_bytes += len(data)
                sql_tail.feed(data)
                tables.feed(data)
                out = compressor.compress(data)
            if out:
                batch.append(out)
                batched += len(out)
            # The first bytes (the gzip header) go out at once: once the response has started, a
            # failure, however early, can only break the transfer (the server would otherwise answer
            # a body that fails before its first chunk with its own 500 page).
            if batched and (batched >= BATCH_SIZE or data is None or not self.progress.gzip_bytes):
                self.progress.gzip_bytes += batched
                chunk = b"".join(batch)
                if digest is not None:
                    digest.update(chunk)
                check = crc32(chunk, check)
                yield chunk
                batch.clear()
                batched = 0
            data = self._read(timeout=IDLE_FLUSH_S)

        returncode = self._proc.wait()
        self._stderr_thread.join(timeout=5)
        if self._stopped is not None:
            kind, message = self._stopped
            self._finish(kind, message)
            raise DumpBroken(message)
        if returncode != 0:
            reason = diagnose(
                self.stderr_text() or f"exit status {returncode}", *self.secrets, **self.hints, mid_stream=True
            ).message
            self._finish(FAILED, f"pg_dump exited with status {returncode} mid-stream: {reason}")
            raise DumpBroken(self.progress.error)
        if not sql_tail.is_complete():
            # An exit status of 0 is not enough: a truncated dump must never become a valid file.
            self._finish(FAILED, f"pg_dump exited 0 but {INCOMPLETE_REASON}")
            raise DumpBroken(self.progress.error)
        self.progress.phase = "finishing"
        tail = b"".join(batch) + compressor.flush()
        self.progress.gzip_bytes += len(tail)
        if digest is not None:
            digest.update(tail)
            self.progress.sha256 = digest.hexdigest()
        self.progress.crc32 = crc32(tail, check)
        self.progress.table_rows = tables.rows
        self._finish(OK)
        yield tail

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, kind: str, message: str) -> None:
        """Stop pg_dump now, from any thread, and say why (ABORTED, CANCELLED or FAILED and a message).

        The thread streaming the dump then sees pg_dump's output end and breaks the transfer (or,
        before the first byte, raises DumpInterrupted); the first reason given is the one kept.
        """
        if self._stopped is None:
            self._stopped = (kind, message)
            self._stopped_at = time.monotonic()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._signal(signal.SIGTERM)

    def _escalate(self) -> None:
        """SIGKILL a stopped pg_dump still running after TERMINATE_GRACE_S (on SIGTERM it sends the server
        a cancel request, which a stalled link can hold up for ever)."""
        if time.monotonic() - self._stopped_at > TERMINATE_GRACE_S and self._proc.poll() is None:
            self._signal(signal.SIGKILL)

    def close(self) -> None:
        """Stop pg_dump (SIGTERM, then SIGKILL), reap it and close its pipes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)  # pg_dump is gone, so its stderr is at EOF
        for pipe in (proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if self.progress.outcome is None:
            self._finish(*(self._stopped or (ABORTED, "the download stopped before the dump finished")))

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def _finish(self, outcome: str, error: str | None = None) -> None:
        self.progress.end(outcome, error)


def not_answering_for(message: str) -> CannotDump:
    """The CannotDump of a pg_dump that wrote nothing within its time (STALL_REASON)."""
    return CannotDump(NOT_ANSWERING, f"The database is not answering: {message}.")
