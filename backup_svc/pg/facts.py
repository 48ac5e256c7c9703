"""Short read-only queries against the database being backed up (version, size, tables)."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import psycopg

from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.command import keepalive_params
from backup_svc.pg.diagnose import CannotDump, diagnose, not_answering


@dataclass(frozen=True)
class ServerFacts:
    """What the service needs to know about the server before dumping it."""

    version_num: int
    version: str  # e.g. "15.18"
    database: str
    size_bytes: int
    table_count: int
    role: str = ""  # the role the service connects as (current_user)
    # The cluster's system identifier: differs between any two clusters, even when database names
    # match (every Railway database is `railway`); stored backups record it as their owner.
    system_identifier: str = ""


_FACTS_SQL = """
SELECT current_setting('server_version_num')::int,
       split_part(current_setting('server_version'), ' ', 1),
       current_database(),
       pg_database_size(current_database()),
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'),
       current_user,
       (SELECT system_identifier::text FROM pg_control_system())
"""


def connect(conn: ConnInfo, *, timeout_s: int, purpose: str) -> psycopg.Connection:
    """A read-only autocommit connection labelled `backup_svc-<purpose>`; CannotDump when refused."""
    try:
        return psycopg.connect(
            conn.uri,
            password=conn.password,
            connect_timeout=timeout_s,
            application_name=f"backup_svc-{purpose}",
            options="-c default_transaction_read_only=on -c statement_timeout=30000",
            autocommit=True,
            **keepalive_params(conn.uri),
        )
    except psycopg.Error as exc:
        raise diagnose(str(exc), conn.password) from None


class Deadline:
    """Cut a connection's socket when `seconds` have passed, so a query on a stalled link returns.

    The server's statement_timeout cannot help when the link itself is frozen (the server never
    hears the query, or its answer never arrives), and TCP keepalives take about a minute. A
    watcher thread shuts the socket down at the deadline: the blocked query then fails at once.
    """

    def __init__(self, db: psycopg.Connection, seconds: float):
        self.db = db
        self.seconds = seconds
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="db-deadline", daemon=True)

    def __enter__(self) -> "Deadline":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired = True
        try:
            with socket.socket(fileno=os.dup(self.db.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: the query has ended anyway

    def check(self, exc: psycopg.Error, password: str | None) -> CannotDump:
        """What a query's failure means: "not answering" when the deadline cut it, else its diagnosis."""
        return not_answering(self.seconds) if self.fired else diagnose(str(exc), password)


def server_facts(conn: ConnInfo, *, timeout_s: int = 10) -> ServerFacts:
    """Version, name, size, table count and role of the configured database.

    Answers within about 2 x `timeout_s` whatever the link does: the connection within `timeout_s`
    (libpq's connect_timeout), the query within the same again (a Deadline).
    """
    with connect(conn, timeout_s=timeout_s, purpose="info") as db:
        with Deadline(db, timeout_s) as deadline:
            try:
                row = db.execute(_FACTS_SQL).fetchone()
            except psycopg.Error as exc:
                raise deadline.check(exc, conn.password) from None
    assert row is not None
    return ServerFacts(*row)


class CachedFacts:
    """`server_facts`, reused for `ttl_s`: pages are rendered far more often than the answer changes.

    One caller refreshes an expired answer while the others keep getting the previous one, so a
    burst of page views costs one query and waits for none; with no answer yet, callers wait for
    the one query. A failure is remembered briefly, so an unreachable database is not dialled once
    per page view.
    """

    def __init__(self, conn: ConnInfo, *, ttl_s: float = 10, error_ttl_s: float = 2):
        self.conn = conn
        self.ttl_s = ttl_s
        self.error_ttl_s = error_ttl_s
        self._refreshing = threading.Lock()
        self._value: ServerFacts | CannotDump | None = None
        self._expires = 0.0

    def get(self, *, timeout_s: int) -> ServerFacts:
        """Fresh-enough facts, or a CannotDump like the last attempt's."""
        value = self._value
        if value is None or time.monotonic() >= self._expires:
            if isinstance(value, ServerFacts) and not self._refreshing.acquire(blocking=False):
                return value  # another thread is refreshing it: the previous answer will do
            if not isinstance(value, ServerFacts):
                self._refreshing.acquire()
            try:
                if self._value is value:  # nobody refreshed it while we waited
                    self._refresh(timeout_s)
            finally:
                self._refreshing.release()
            value = self._value
        if isinstance(value, CannotDump):
            raise CannotDump(value.kind, value.message)  # a new one per caller: threads share none
        return value

    def _refresh(self, timeout_s: int) -> None:
        try:
            self._value, ttl = server_facts(self.conn, timeout_s=timeout_s), self.ttl_s
        except CannotDump as exc:
            self._value, ttl = exc, self.error_ttl_s
        self._expires = time.monotonic() + ttl


class BackgroundFacts(CachedFacts):
    """`CachedFacts` whose callers never wait on the database: for anonymous callers (`/readyz`).

    An expired answer — good or bad — is returned as it is while one background thread asks the
    database again; its answer serves the callers after it. Only before the very first answer does
    a caller wait, at most `first_wait_s` (`start` asks at start-up, so there usually is one); then
    it gets "not answering". A database that accepts connections and never answers therefore
    costs callers nothing: before, they queued on the refresh and held every request thread.
    """

    def __init__(self, conn: ConnInfo, *, ttl_s: float, error_ttl_s: float, timeout_s: int, first_wait_s: float = 2.0):
        super().__init__(conn, ttl_s=ttl_s, error_ttl_s=error_ttl_s)
        self.timeout_s = timeout_s
        self.first_wait_s = first_wait_s
        self._answered = threading.Event()

    def start(self) -> None:
        """Ask the database now, in the background (no-op while a refresh runs)."""
        if not self._refreshing.acquire(blocking=False):
            return
        threading.Thread(target=self._refresh_then_release, name="readiness", daemon=True).start()

    def _refresh_then_release(self) -> None:
        try:
            self._refresh(self.timeout_s)
        finally:
            self._answered.set()
            self._refreshing.release()

    def get(self, *, timeout_s: int | None = None) -> ServerFacts:
        """The latest answer, however old (a refresh is started when it has expired); CannotDump like it."""
        if self._value is None or time.monotonic() >= self._expires:
            self.start()
        if self._value is None:
            self._answered.wait(self.first_wait_s)
        value = self._value
        if value is None:
            raise not_answering(self.first_wait_s)
        if isinstance(value, CannotDump):
            raise CannotDump(value.kind, value.message)  # a new one per caller: threads share none
        return value
