"""Streaming a backup file into psql so that it commits everything or nothing."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
from typing import BinaryIO, Callable

from backup_svc.pg.conninfo import ConnInfo
from backup_svc.files.reader import BackupReader
from backup_svc.files.scan import DumpScanner
from backup_svc.files.verify import VerifyReport, report_of
from backup_svc.pg.command import (
    CONNECTION_CHECK_MS,
    CONNECTION_CHECK_SINCE,
    ClientCommand,
    child_environment,
    start_client,
)
from backup_svc.pg.scrub import scrub


class RestoreFailed(Exception):
    """The restore did not happen (or was rolled back); the message says why in one line."""


def psql_command(
    psql: str, conn: ConnInfo, server_version_num: int | None = None, *, single_transaction: bool = True
) -> ClientCommand:
    """psql reading a script from stdin, stopping at the first error, all in one transaction (unless
    `single_transaction` is off: the script's own BEGIN/COMMIT, as a parallel restore's large objects)."""
    # `-f -` rather than plain stdin: --single-transaction is documented for -f/-c, and error
    # messages then carry the script's line number.
    argv = [
        psql,
        "--no-psqlrc",
        "--quiet",
        "-v",
        "ON_ERROR_STOP=1",
        *(["--single-transaction"] if single_transaction else []),
        "-f",
        "-",
        f"--dbname={conn.uri}",
    ]
    # Without a password in the URL, the caller's own PGPASSWORD / ~/.pgpass apply, as with any libpq
    # tool; nothing else of the caller's environment but PATH, locale and libpq's variables.
    env = {**child_environment(), **conn.libpq_env(), "PGAPPNAME": "backup_svc-restore"}
    if server_version_num is not None and server_version_num >= CONNECTION_CHECK_SINCE:
        # A psql that was killed leaves no session behind waiting for (or holding) locks.
        env["PGOPTIONS"] = f"-c client_connection_check_interval={CONNECTION_CHECK_MS}"
    return ClientCommand(argv=argv, env=env)


def _psql_error(stderr_tail: collections.deque[str], returncode: int, secrets: tuple[str | None, ...]) -> str:
    errors = [line for line in stderr_tail if "ERROR:" in line or "FATAL:" in line or "error:" in line]
    detail = (errors or list(stderr_tail) or [f"psql exited with status {returncode}"])[-1].strip()
    return scrub(detail, *secrets)


def stream_into_psql(
    path: str,
    command: ClientCommand,
    *,
    secrets: tuple[str | None, ...] = (),
    opener: Callable[[], BinaryIO] | None = None,
    watch: Callable[[DumpScanner], None] | None = None,
) -> VerifyReport:
    """Feed the SQL of `path` to psql; raise RestoreFailed (psql failed) or BadBackup (the file did).

    Returns what this pass found in the file (the same report `verify` gives): the restore verifies
    as it goes, so no separate verify pass is needed for a file nobody has to compare first.

    Either way nothing is committed: psql sends COMMIT only at the end of its input, and on a bad
    file it is killed before it gets there. `watch` sees the scanner after each chunk handed to psql
    (SQL bytes, COPY statements so far); whatever it raises stops the restore the same way.
    """
    try:
        # psql dies with this process whatever kills it: a restore cut short never commits.
        proc = start_client(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise RestoreFailed(f"psql could not be started: {exc.strerror}") from None
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
    reader = threading.Thread(
        target=lambda: stderr_tail.extend(raw.decode("utf-8", "replace").rstrip("\n") for raw in proc.stderr),
        daemon=True,
    )
    reader.start()
    report: VerifyReport | None = None
    try:
        try:
            # The same checks as verify, again, in case the file changed since; and the large-object
            # BEGIN/COMMIT go, or --single-transaction would not be all or nothing.
            scanner = DumpScanner(drop_lo_transaction=True)
            backup = BackupReader(path, opener)
            for chunk in backup:
                proc.stdin.write(scanner.feed(chunk))
                if watch is not None:
                    watch(scanner)
            proc.stdin.write(scanner.finish())
            report = report_of(path, backup, scanner)  # BadBackup before psql could commit
            proc.stdin.close()  # end of input: psql commits now, and only now
        except BrokenPipeError:
            pass  # psql stopped at an error and rolled back; its status and stderr say why
    except BaseException:
        # A bad file (or Ctrl-C): kill psql before it reaches the end of its input and commits.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    finally:
        returncode = proc.wait()
        reader.join(timeout=5)
        for pipe in (proc.stdin, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
    if returncode != 0:
        raise RestoreFailed(
            "psql stopped at an error and the transaction was rolled back, so the target "
            f"is as it was: {_psql_error(stderr_tail, returncode, secrets)}"
        )
    if report is None:  # psql closed its input early yet exited 0: it cannot have run the whole file
        raise RestoreFailed("psql stopped reading before the end of the file; nothing was committed")
    return report
