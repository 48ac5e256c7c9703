"""N connections to the new database, each taking jobs (COPY rows, one index build) from a bounded
queue in its own thread; each job is its own transaction. The first failure stops them all."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable

import psycopg

from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.pg.command import CONNECTION_CHECK_MS, CONNECTION_CHECK_SINCE, keepalive_params
from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.diagnose import error_lines
from backup_svc.pg.scrub import scrub

# How often a waiting thread looks whether another one failed or the restore was stopped.
POLL_S = 0.2


@dataclass(frozen=True)
class Job:
    """One transaction for a worker: a table's COPY rows, or one SQL statement (an index build)."""

    what: str  # for messages: "rows of app.people", "index people_name_trgm"
    statement: bytes
    rows: tuple[bytes, ...] | None  # COPY data (None: `statement` is run as it is)
    settings: tuple[bytes, ...]  # the session settings (SET …) in force where it stood in the script


class WorkerPool:
    """`submit` blocks while `jobs` jobs wait (memory bound); `wait_done` is the barrier between phases."""

    def __init__(self, conn: ConnInfo, jobs: int, *, timeout_s: int = 10) -> None:
        self.conn = conn
        self.queue: queue.Queue[Job] = queue.Queue(maxsize=jobs)
        self.failure: str | None = None
        self.stopping = threading.Event()
        self._pending = 0
        self._done = threading.Condition()
        self.connections: list[psycopg.Connection] = []
        self.threads: list[threading.Thread] = []
        for _ in range(jobs):
            self.connections.append(self._connect(timeout_s))
        self.threads = [
            threading.Thread(target=self._work, args=(i + 1, db), daemon=True, name=f"restore-job-{i + 1}")
            for i, db in enumerate(self.connections)
        ]
        for thread in self.threads:
            thread.start()

    def _connect(self, timeout_s: int) -> psycopg.Connection:
        try:
            db = psycopg.connect(
                self.conn.uri,
                password=self.conn.password,
                connect_timeout=timeout_s,
                application_name="backup_svc-restore",
                autocommit=True,
                **keepalive_params(self.conn.uri),
            )
            if db.info.server_version >= CONNECTION_CHECK_SINCE:
                # A session whose client died (this process killed) does not run on alone.
                db.execute(f"SET client_connection_check_interval = {CONNECTION_CHECK_MS}")
            if db.info.server_version >= 140000:
                # Idle while large objects stream through their own psql: a server, role or database
                # idle_session_timeout (common on managed services) must not end it then.
                db.execute("SET idle_session_timeout = 0")
            # A job's commit need not wait for its WAL to reach the disk (one flush per 4 MiB job
            # otherwise): `make_durable` flushes all of it once the jobs are done, and a crash before
            # that fails the restore, which drops the database.
            db.execute("SET synchronous_commit = off")
            return db
        except psycopg.Error as exc:
            self.close()
            raise RestoreFailed(
                f"cannot open the restore's connections: {scrub(error_lines(str(exc)), self.conn.password)}"
            ) from None

    def submit(self, job: Job) -> None:
        """Queue a job; RestoreFailed as soon as any job failed."""
        with self._done:
            self._pending += 1
        while True:
            self.raise_failure()
            try:
                self.queue.put(job, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def wait_done(self, tick: Callable[[], None] = lambda: None) -> None:
        """Return when every submitted job has committed; RestoreFailed when one failed. `tick` runs
        every POLL_S meanwhile: what it raises (a cancel) ends the wait."""
        while True:
            with self._done:
                if not self._pending or self.failure is not None:
                    break
                self._done.wait(POLL_S)
            tick()
        self.raise_failure()

    def make_durable(self) -> None:
        """After `wait_done`: one synchronous commit with a transaction id, which flushes the WAL of every
        job committed before it (they committed with synchronous_commit off)."""
        db = self.connections[0]
        try:
            db.execute("SET synchronous_commit = on")
            db.execute("SELECT pg_catalog.txid_current()")
        except psycopg.Error as exc:
            raise RestoreFailed(
                f"the restored data could not be flushed: {scrub(error_lines(str(exc)), self.conn.password)}"
            ) from None

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise RestoreFailed(self.failure)

    def _work(self, number: int, db: psycopg.Connection) -> None:
        applied: dict[bytes, None] = {}
        while not self.stopping.is_set():
            try:
                job = self.queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            try:
                if self.failure is None and not self.stopping.is_set():  # taken as the restore stopped: not run
                    for line in job.settings:
                        if line not in applied:
                            db.execute(line)
                    applied = dict.fromkeys(job.settings)
                    self._run(db, job)
            except Exception as exc:  # noqa: BLE001 - any failure stops the restore, with what happened
                detail = error_lines(str(exc)) if isinstance(exc, psycopg.Error) else repr(exc)
                with self._done:
                    if self.failure is None and not self.stopping.is_set():
                        self.failure = (
                            f"the {job.what} failed on connection {number}: {scrub(detail, self.conn.password)}"
                        )
                self.stopping.set()
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    @staticmethod
    def _run(db: psycopg.Connection, job: Job) -> None:
        with db.cursor() as cursor:
            if job.rows is None:
                cursor.execute(job.statement)
                return
            with cursor.copy(job.statement) as copy:
                for rows in job.rows:
                    copy.write(rows)

    def close(self, *, abort: bool = False) -> None:
        """Stop the threads (cancelling what runs, with `abort`) and close the connections."""
        self.stopping.set()
        for _ in range(5 if abort else 1):
            if abort:
                # Again while a thread still runs: a cancel that reached a session between two
                # statements is lost, and the thread may have started its job just then.
                for db in self.connections:
                    try:
                        db.cancel_safe(timeout=2)
                    except Exception:  # noqa: BLE001 - the session may be gone already; DROP … FORCE ends it
                        pass
            for thread in self.threads:
                thread.join(timeout=1 if abort else 5)
            if all(not thread.is_alive() for thread in self.threads):
                break
        if all(not thread.is_alive() for thread in self.threads):
            for db in self.connections:
                db.close()
