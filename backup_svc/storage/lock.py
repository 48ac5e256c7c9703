"""One stored backup at a time, across processes and replicas: a PostgreSQL advisory lock.

The lock is taken in the database being backed up (every process that could upload reaches it,
whichever machine it runs on) with pg_try_advisory_lock, which works in a read-only session and
never waits. It is held by a session of its own for as long as the upload runs and vanishes with
that session, so a killed process cannot leave it behind.
"""

from __future__ import annotations

import hashlib

import psycopg

from backup_svc.pg.conninfo import ConnInfo
from backup_svc.pg.diagnose import diagnose
from backup_svc.pg.facts import connect


class AnotherBackupRunning(Exception):
    """Another process holds the stored-backup lock for this destination."""


def lock_key(destination: str) -> int:
    """A signed 64-bit advisory-lock key for one destination (bucket, prefix and backup name)."""
    digest = hashlib.sha256(f"backup_svc stored backup {destination}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StoredBackupLock:
    """`with StoredBackupLock(conn, destination):` — AnotherBackupRunning when someone else holds it.

    Raises CannotDump (from the connection) when the database cannot be reached at all.
    """

    def __init__(self, conn: ConnInfo, destination: str, *, timeout_s: int = 10):
        self.conn = conn
        self.key = lock_key(destination)
        self.timeout_s = timeout_s
        self._db = None

    def __enter__(self) -> "StoredBackupLock":
        db = connect(self.conn, timeout_s=self.timeout_s, purpose="upload-lock")
        try:
            (taken,) = db.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            db.close()
            raise diagnose(str(exc), self.conn.password) from None
        except BaseException:
            db.close()
            raise
        if not taken:
            db.close()
            raise AnotherBackupRunning("another stored backup is running (it holds the lock in the database)")
        self._db = db
        return self

    def __exit__(self, *exc_info) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()  # ends the session, which releases the lock
