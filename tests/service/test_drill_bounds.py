"""Restore drills are bounded: a whole drill ends within RESTORE_DRILL_TIMEOUT whatever its link does,
and a scratch database a killed or abandoned drill left behind is dropped by the next drill. Real
PostgreSQL, the CLI, and a TCP proxy whose link freezes (tests/support.py: FreezableProxy)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from psycopg import sql

from tests.support import REPO, run_cli

LEFTOVER = "backup_svc_drill_20200101_000000_dead"  # what a drill killed in 2020 left


def databases(pg_cluster, like: str) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))]


def drop(pg_cluster, name: str) -> None:
    with pg_cluster.connect() as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_drill_whose_link_freezes_ends_within_its_timeout(backup, rich_db, pg_cluster, db_proxy):
    """Issue 21, fault 5: a drill server whose link froze hung `drill` for 401 s. The link freezes
    from the restore's own connection on (the scratch database is created, psql's session stalls)."""
    db_proxy.freeze_after(3)  # look for leftovers, create the scratch database, inspect it; then psql freezes
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": rich_db, "RESTORE_DRILL_TIMEOUT": "8",
           "RESTORE_DRILL_URL": db_proxy.url(pg_cluster, "postgres")}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "backup_svc", "drill", str(backup)], capture_output=True,
                              text=True, timeout=60, env=env)
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
        done = run_cli("drill", str(backup), env={"DATABASE_URL": rich_db,
                                                  "RESTORE_DRILL_URL": pg_cluster.url("postgres")})
        assert done.returncode == 0, done.stderr
        assert databases(pg_cluster, "backup_svc_drill_%") == []
        assert f"dropped leftover scratch database {LEFTOVER!r}" in done.stderr
    finally:
        drop(pg_cluster, LEFTOVER)
