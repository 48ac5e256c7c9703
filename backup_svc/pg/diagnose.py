"""Turning pg_dump and libpq error text into a kind of failure and a message a user can act on."""
from __future__ import annotations

import re

from backup_svc.pg.scrub import scrub

UNREACHABLE = "unreachable"
AUTH_FAILED = "auth_failed"
NO_DATABASE = "no_database"
INCOMPATIBLE = "incompatible"
LOCKED = "locked"
FAILED = "failed"

_PATTERNS = [
    (INCOMPATIBLE, re.compile(r"server version mismatch|unsupported server version|incompatible", re.I)),
    (AUTH_FAILED, re.compile(r"password authentication failed|no password supplied|authentication failed"
                             r"|no pg_hba\.conf entry|role \".*\" does not exist", re.I)),
    (NO_DATABASE, re.compile(r"database \".*\" does not exist", re.I)),
    (UNREACHABLE, re.compile(r"could not translate host name|connection refused|timeout expired|no route to host"
                             r"|network is unreachable|could not connect|server closed the connection unexpectedly"
                             r"|no such file or directory|connection to server .* failed", re.I)),
    # pg_dump waits for its table locks with a statement timeout (--lock-wait-timeout)
    (LOCKED, re.compile(r"lock timeout|could not obtain lock|Query was: LOCK TABLE", re.I)),
]

_ADVICE = {
    UNREACHABLE: "Cannot reach the database server. Check the host and port in DATABASE_URL and that the "
                 "server is running and accepts connections from this service.",
    AUTH_FAILED: "The database rejected the user or password in DATABASE_URL.",
    NO_DATABASE: "The database named in DATABASE_URL does not exist on that server.",
    INCOMPATIBLE: "The installed pg_dump cannot dump this server's version.",
    LOCKED: "pg_dump could not lock every table in time because another session holds a conflicting "
            "lock (a migration, VACUUM FULL, ...). Try again when it has finished.",
    FAILED: "pg_dump failed.",
}


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
    cleaned = [re.sub(r"^pg_dump: (error|detail|hint): ", "", l.strip()) for l in lines if l.strip()]
    cleaned = [l for l in cleaned if not l.startswith("pg_dump: ")]
    return " ".join(" ".join(cleaned).split())[:1000]


def diagnose(text: str, *secrets: str | None) -> CannotDump:
    """Classify libpq / pg_dump error text into a CannotDump with advice and the (scrubbed) detail."""
    detail = scrub(error_lines(text), *secrets) or "no error message"
    kind = next((k for k, pattern in _PATTERNS if pattern.search(detail)), FAILED)
    return CannotDump(kind, f"{_ADVICE[kind]} ({detail})")
