"""Restore drills are bounded: a whole drill is stopped at RESTORE_DRILL_TIMEOUT and ends a bounded time
later whatever its link does, and a scratch database a killed or abandoned drill left behind is dropped
by the next drill. Real PostgreSQL, the CLI, and a TCP proxy whose link freezes
(tests/freezable_proxy.py: FreezableProxy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

from psycopg import sql

from tests import REPO
from tests.processes import run_cli

LEFTOVER = "backup_svc_drill_20200101_000000_dead"  # what a drill killed in 2020 left


def databases(pg_cluster, like: str) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]


def drop(pg_cluster, name: str) -> None:
    with pg_cluster.connect() as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_drill_whose_link_freezes_fails_at_its_timeout_and_exits_a_bounded_time_later(
    backup, rich_db, pg_cluster, db_proxy
):
    """Issue 21, fault 5: a drill server whose link froze hung `drill` for 401 s. The link freezes
    from the restore's own connection on (the scratch database is created, psql's session stalls).
    The drill fails naming RESTORE_DRILL_TIMEOUT (8 s) and the whole command exits within 8 + 12 s: the
    wind-down after the deadline (drillbounds.WIND_DOWN_S, 8 s) plus the command's own start-up."""
    db_proxy.freeze_after(3)  # look for leftovers, create the scratch database, inspect it; then psql freezes
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": rich_db,
        "RESTORE_DRILL_TIMEOUT": "8",
        "RESTORE_DRILL_URL": db_proxy.url(pg_cluster, "postgres"),
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "backup_svc", "drill", str(backup)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        took = time.monotonic() - started
        db_proxy.thaw()
        db_proxy.close()
        for name in databases(pg_cluster, "backup_svc_drill_%"):
            drop(pg_cluster, name)
    assert done.returncode == 1, done.stderr
    assert took < 8 + 12, (took, done.stderr)  # the deadline, then a bounded clean-up attempt
    assert "RESTORE_DRILL_TIMEOUT" in done.stderr and "8 s" in done.stderr, done.stderr
    assert pg_cluster.password not in done.stderr


def test_a_leftover_scratch_database_is_dropped_by_the_next_drill(backup, rich_db, pg_cluster):
    """Issue 21, fault 5: a drill killed mid-restore left its scratch database for ever."""
    with pg_cluster.connect() as db:
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(LEFTOVER)))
    try:
        done = run_cli(
            "drill", str(backup), env={"DATABASE_URL": rich_db, "RESTORE_DRILL_URL": pg_cluster.url("postgres")}
        )
        assert done.returncode == 0, done.stderr
        assert databases(pg_cluster, "backup_svc_drill_%") == []
        assert f"dropped leftover scratch database {LEFTOVER!r}" in done.stderr
    finally:
        drop(pg_cluster, LEFTOVER)


def test_a_drop_that_waits_on_another_sessions_lock_gives_up_within_its_bound(backup, rich_db, pg_cluster):
    """Issue 21, fault 5: `DROP DATABASE … WITH (FORCE)` of a scratch database waited 69 s on another
    client. Here an unrelated session (connected elsewhere, so FORCE does not end it) holds a lock on the
    scratch database — `COMMENT ON DATABASE` in an open transaction — from the moment it appears until
    the drill has exited. The drop must give up after its lock_timeout (drillbounds.DROP_LOCK_TIMEOUT,
    5 s); the drill still reports its real result, says what is left, and the leftover is dropped by
    a later drill (drop_leftovers, with the clock moved on by two hours: the one injected part)."""
    from backup_svc.notify.drillbounds import drop_leftovers
    from backup_svc.timefmt import utc_now

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": rich_db,
        "RESTORE_DRILL_URL": pg_cluster.url("postgres"),
    }
    drill = subprocess.Popen(
        [sys.executable, "-m", "backup_svc", "drill", str(backup)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    holder = pg_cluster.connect()  # in the postgres database, not the scratch one
    holder.autocommit = False
    scratch, drop_waited_at = None, None
    try:
        deadline = time.monotonic() + 60
        while scratch is None and drill.poll() is None and time.monotonic() < deadline:
            found = databases(pg_cluster, "backup_svc\\_drill\\_%")
            if found:
                [scratch] = found
                holder.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS 'held by another client'").format(sql.Identifier(scratch))
                )  # the transaction stays open: the lock is held
            else:
                time.sleep(0.01)
        assert scratch is not None, "the drill ended before its scratch database was seen"
        while drill.poll() is None and time.monotonic() < deadline:
            if drop_waited_at is None and drop_waits_on_a_lock(pg_cluster):
                drop_waited_at = time.monotonic()
            time.sleep(0.05)
        out, err = drill.communicate(timeout=max(deadline - time.monotonic(), 1))
        ended_at = time.monotonic()
    finally:
        if drill.poll() is None:
            drill.kill()
        holder.rollback()
        holder.close()
    try:
        assert drop_waited_at is not None, err  # the conflict was real: the drop stood in the lock queue
        assert ended_at - drop_waited_at < 5 + 5, (ended_at - drop_waited_at, err)  # lock_timeout, then exit
        assert drill.returncode == 0, err  # the restore was good: the drill passed
        left = "canceling statement due to lock timeout; a later drill drops it once it is 1 h old"
        assert f"warning: could not drop scratch database {scratch!r}: {left}" in err, err
        assert out.startswith("drill ok: rich.sql.gz restored") and out.strip().endswith(
            f"scratch database {scratch!r} left: {left}"
        ), out  # not "dropped"
        assert databases(pg_cluster, scratch) == [scratch]  # left, and said so
        said: list[str] = []
        with pg_cluster.connect() as db:
            db.autocommit = True
            assert drop_leftovers(db, utc_now() + timedelta(hours=2), said.append) == [scratch], said
        assert databases(pg_cluster, "backup_svc\\_drill\\_%") == []
    finally:
        if scratch is not None:
            drop(pg_cluster, scratch)


def drop_waits_on_a_lock(pg_cluster) -> bool:
    with pg_cluster.connect() as db:
        return bool(
            db.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'DROP DATABASE%'"
            ).fetchall()
        )
