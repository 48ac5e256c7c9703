"""Turning pg_dump and libpq error text into a kind of failure and a message a user can act on."""

from __future__ import annotations

import re

from backup_svc.pg.scrub import scrub

UNREACHABLE = "unreachable"
NOT_ANSWERING = "not_answering"
NOT_ACCEPTING = "not_accepting"  # the server answered: it is up, but takes no connection now
AUTH_FAILED = "auth_failed"
NO_DATABASE = "no_database"
INCOMPATIBLE = "incompatible"
LOCKED = "locked"
PERMISSION = "permission"
OUT_OF_LOCKS = "out_of_locks"
TERMINATED = "terminated"
SSL_UNSUPPORTED = "ssl_unsupported"
CERTIFICATE = "certificate"
FAILED = "failed"
# Not from pg_dump's text: the dump was stopped on purpose before its first byte.
ABORTED = "aborted"  # its client went away
CANCELLED = "cancelled"  # someone cancelled it (DELETE /api/v1/backups/<id>)

# First match wins: the specific causes come before the generic "could not connect" and before the
# "Query was: LOCK TABLE" that a permission or lock-table failure also prints.
_PATTERNS = [
    (INCOMPATIBLE, re.compile(r"server version mismatch|unsupported server version|incompatible", re.I)),
    (SSL_UNSUPPORTED, re.compile(r"server does not support SSL", re.I)),
    (CERTIFICATE, re.compile(r"certificate|SSL error|sslrootcert|SSL SYSCALL", re.I)),
    (
        AUTH_FAILED,
        re.compile(
            r"password authentication failed|no password supplied|authentication failed"
            r"|no pg_hba\.conf entry|role \".*\" does not exist",
            re.I,
        ),
    ),
    (NO_DATABASE, re.compile(r"database \".*\" does not exist", re.I)),
    (PERMISSION, re.compile(r"permission denied for", re.I)),
    (OUT_OF_LOCKS, re.compile(r"out of shared memory|max_locks_per_transaction", re.I)),
    (
        TERMINATED,
        re.compile(
            r"terminating connection due to administrator command|terminating connection because of"
            r"|the database system is shutting down|the database system is in recovery mode",
            re.I,
        ),
    ),
    (NOT_ANSWERING, re.compile(r"timeout expired|not answering", re.I)),
    # The server's own refusal (FATAL from a reachable server), before the generic "connection ... failed".
    (
        NOT_ACCEPTING,
        re.compile(
            r"not (?:yet |currently )?accepting connections|the database system is starting up"
            r"|too many clients|connection slots are reserved|too many connections for",
            re.I,
        ),
    ),
    (
        UNREACHABLE,
        re.compile(
            r"could not translate host name|connection refused|no route to host"
            r"|network is unreachable|could not connect|server closed the connection unexpectedly"
            r"|no such file or directory|connection to server .* failed",
            re.I,
        ),
    ),
    # pg_dump waits for its table locks with a statement timeout (--lock-wait-timeout)
    (LOCKED, re.compile(r"lock timeout|could not obtain lock|Query was: LOCK TABLE", re.I)),
]
# Mid-stream, a connection the server closed was ended by the server (or the path to it), not unreachable.
_CLOSED_MID_STREAM = re.compile(
    r"server closed the connection unexpectedly|connection to server was lost"
    r"|could not receive data from server|SSL connection has been closed",
    re.I,
)

_ADVICE = {
    UNREACHABLE: "Cannot reach the database server. Check the host and port in DATABASE_URL and that the "
    "server is running and accepts connections from this service.",
    NOT_ACCEPTING: "The database server is reachable (host and port are right) but refuses connections now: it is "
    "starting up or recovering, the database has connections turned off (ALLOW_CONNECTIONS false, "
    "CONNECTION LIMIT), or every connection slot is taken (max_connections). The server's own "
    "reason follows; retry once it accepts connections again.",
    NOT_ANSWERING: "The database is not answering: no reply in the time allowed. The network link to it may "
    "be stalled or the server overloaded.",
    AUTH_FAILED: "The database rejected the user or password in DATABASE_URL.",
    NO_DATABASE: "The database named in DATABASE_URL does not exist on that server.",
    INCOMPATIBLE: "The installed pg_dump cannot dump this server's version.",
    LOCKED: "pg_dump could not lock every table in time because another session holds a conflicting "
    "lock (a migration, VACUUM FULL, ...). Try again when it has finished.",
    TERMINATED: "The server ended the backup's connection (pg_terminate_backend, an administrator, a server "
    "restart or crash). Try again once the server is back.",
    SSL_UNSUPPORTED: "The server does not accept SSL connections, but DATABASE_URL (sslmode) or PGSSLMODE requires "
    "SSL. Enable SSL on the server, or, on a private network only, use sslmode=prefer.",
    CERTIFICATE: "The SSL certificate check failed: the server's certificate is not signed by the root "
    "certificate given (sslrootcert / PGSSLROOTCERT), that file is missing, or the certificate "
    "does not name the host (sslmode=verify-full). Point sslrootcert at the CA that signed the "
    "server's certificate; sslmode=require encrypts without verifying.",
    FAILED: "pg_dump failed.",
}
# What each kind of object needs for pg_dump to read it.
_GRANT = {
    "schema": "USAGE ON SCHEMA",
    "function": "EXECUTE ON FUNCTION",
    "large object": "SELECT ON LARGE OBJECT",
    "sequence": "SELECT ON SEQUENCE",
    "database": "CONNECT ON DATABASE",
}
_DENIED = re.compile(r"permission denied for (large object|materialized view|\w+) (\S+)", re.I)
_LOCK_QUERY = re.compile(r"LOCK TABLE (?:ONLY )?(\S+) IN", re.I)


class CannotDump(Exception):
    """The dump cannot start; `kind` says why, `message` is safe to show a client."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def error_lines(text: str) -> str:
    """The part of pg_dump's stderr from its first error on, whitespace folded, prefixes dropped."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "error:" in line or "FATAL" in line or "ERROR" in line:
            lines = lines[i:]
            break
    cleaned = [re.sub(r"^pg_dump: (error|detail|hint): ", "", line.strip()) for line in lines if line.strip()]
    cleaned = [line for line in cleaned if not line.startswith("pg_dump: ")]
    return " ".join(" ".join(cleaned).split())[:1000]


def _permission_advice(detail: str, role: str | None) -> str:
    match = _DENIED.search(detail)
    kind, name = (match.group(1).lower(), match.group(2).strip('".,')) if match else ("table", "?")
    lock = _LOCK_QUERY.search(detail)
    if kind in ("table", "view", "materialized view") and lock:
        name = lock.group(1)  # schema-qualified, as pg_dump names it
    who = f"role {role}" if role else "the role in DATABASE_URL"
    grant = _GRANT.get(kind, "SELECT ON")
    statement = f"GRANT {grant} {name} TO {role or '<role>'}"
    return (
        f"The database {who} may not read {kind} {name}: it lacks {grant.split(' ON')[0]} on it, and pg_dump "
        f"must read every object. Grant it ({statement}; on PostgreSQL 14+ `GRANT pg_read_all_data TO "
        f"{role or '<role>'}` covers every table) or back up as the owner. Retrying will not help."
    )


def _locks_advice(table_count: int | None) -> str:
    tables = f"this database has {table_count} tables" if table_count is not None else "the database has many tables"
    return (
        "The server ran out of lock slots (out of shared memory): pg_dump takes a lock on every table and "
        f"{tables}, more than max_locks_per_transaction x (max_connections + max_prepared_transactions) "
        "allows. Raise max_locks_per_transaction on the server (it needs a restart); retrying will not help."
    )


def diagnose(
    text: str, *secrets: str | None, role: str | None = None, table_count: int | None = None, mid_stream: bool = False
) -> CannotDump:
    """Classify libpq / pg_dump error text into a CannotDump with advice and the (scrubbed) detail.

    `role` and `table_count` (from the server's facts) make some advice concrete; `mid_stream` says
    the dump had started, so a closed connection means the server ended it.
    """
    detail = scrub(error_lines(text), *secrets) or "no error message"
    if mid_stream and _CLOSED_MID_STREAM.search(detail) and not _PATTERNS[0][1].search(detail):
        kind = TERMINATED
    else:
        kind = next((k for k, pattern in _PATTERNS if pattern.search(detail)), FAILED)
    if kind == PERMISSION:
        advice = _permission_advice(detail, role)
    elif kind == OUT_OF_LOCKS:
        advice = _locks_advice(table_count)
    else:
        advice = _ADVICE[kind]
    return CannotDump(kind, f"{advice} ({detail})")


def not_answering(seconds: float) -> CannotDump:
    """The database accepted the connection but did not answer a query within `seconds`."""
    return CannotDump(NOT_ANSWERING, f"{_ADVICE[NOT_ANSWERING]} (no answer within {seconds:g} s)")
