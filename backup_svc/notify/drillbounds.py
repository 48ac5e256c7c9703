"""Limits on a restore drill: a deadline on the whole drill (RESTORE_DRILL_TIMEOUT), a clean-up that
cannot hang, and scratch databases left by earlier drills dropped by the next one.

A drill talks to a server over a link that can freeze; psql and every query then wait for ever, and
`upload` (which drills before it exits) or `serve` (which runs one drill at a time) would wait with
them. At the deadline the drill's sessions on the scratch database are terminated (psql then fails
and the usual clean-up drops the database); if even that cannot reach the server, the drill is
abandoned — reported as failed, its scratch database left for the next drill to drop.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

import psycopg
from psycopg import sql

T = TypeVar("T")

SCRATCH_PREFIX = "backup_svc_drill_"
# RESTORE_DRILL_TIMEOUT's default: this much, plus a second per MB of the stored (gzip) backup. The
# measured restore floor is ~10 MB of gzip per second (MEASUREMENTS.md), so this leaves ten-fold room.
DRILL_BASE_S = 300
DRILL_S_PER_MB = 1.0
# After the deadline: how long terminating the drill's sessions, and the drill's own clean-up, may take.
WIND_DOWN_S = 8
# Clean-up statements: a drop that waits on another session gives up (and is retried by the next drill).
DROP_LOCK_TIMEOUT = "5s"
DROP_STATEMENT_TIMEOUT = "30s"
# A scratch database whose name's time is older than this belongs to a drill that is over.
LEFTOVER_AGE = timedelta(hours=1)


class DrillTimedOut(Exception):
    """The drill outlasted its deadline."""


def drill_timeout_s(configured: int | None, size: int | None) -> float:
    """RESTORE_DRILL_TIMEOUT, or its default sized from the backup's `size` in bytes."""
    if configured is not None:
        return float(configured)
    return DRILL_BASE_S + DRILL_S_PER_MB * (size or 0) / 1_000_000


def run_with_deadline(body: Callable[[], T], deadline_s: float, on_deadline: Callable[[], None]) -> T:
    """`body()` in a thread; at `deadline_s`, `on_deadline()` (in a thread of its own, which may hang) and
    WIND_DOWN_S more for `body` to end. DrillTimedOut when it has not: the thread is abandoned."""
    result: list = []

    def run() -> None:
        try:
            result.append((True, body()))
        except BaseException as exc:
            result.append((False, exc))

    worker = threading.Thread(target=run, name="restore-drill-body", daemon=True)
    worker.start()
    worker.join(deadline_s)
    timed_out = worker.is_alive()
    if timed_out:
        threading.Thread(target=on_deadline, name="restore-drill-deadline", daemon=True).start()
        worker.join(WIND_DOWN_S)
        if worker.is_alive():
            raise DrillTimedOut()
    ok, value = result[0]
    if timed_out:
        raise DrillTimedOut()
    if not ok:
        raise value
    return value


def terminate_sessions(db: psycopg.Connection, scratch: str) -> None:
    """End every session on the scratch database (the drill's psql, its count queries)."""
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (scratch,),
    )


def drop_scratch(db: psycopg.Connection, scratch: str) -> None:
    """DROP DATABASE under a lock and statement timeout: a drop that would wait fails instead."""
    db.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
    db.execute(f"SET statement_timeout = '{DROP_STATEMENT_TIMEOUT}'")
    name = sql.Identifier(scratch)
    if db.info.server_version >= 130000:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    else:
        terminate_sessions(db, scratch)
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))


def scratch_time(name: str) -> datetime | None:
    """The UTC time in a scratch database's name (`backup_svc_drill_20261128_193000_1a2b`), or None."""
    stamp = name[len(SCRATCH_PREFIX) : len(SCRATCH_PREFIX) + 15] if name.startswith(SCRATCH_PREFIX) else ""
    try:
        return datetime.strptime(stamp, "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def drop_leftovers(db: psycopg.Connection, now: datetime, say: Callable[[str], None]) -> list[str]:
    """Drop the scratch databases older than LEFTOVER_AGE (drills killed or abandoned); their names."""
    names = [
        r[0]
        for r in db.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH_PREFIX.replace("_", r"\_") + "%",)
        )
    ]
    dropped = []
    for name in names:
        when = scratch_time(name)
        if when is None or when > now - LEFTOVER_AGE:
            continue  # not ours to judge, or a drill that may still be running
        try:
            drop_scratch(db, name)
        except psycopg.Error as exc:
            say(f"warning: could not drop leftover scratch database {name!r}: {str(exc).splitlines()[0]}")
            continue
        say(f"dropped leftover scratch database {name!r}")
        dropped.append(name)
    return dropped
