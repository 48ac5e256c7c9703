"""The test cluster's side: the SQL the fixtures load, a database restored the README's way and its
snapshot to compare, the dumps' sessions, and a table held locked as a migration would."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from pathlib import Path

from backup_svc.pg.localcluster import LocalCluster

# SQL files the fixtures load (tests/data).
DATA = Path(__file__).resolve().parent / "data"


def psql_into(cluster: LocalCluster, dbname: str, **run) -> subprocess.CompletedProcess:
    """`psql -X -q -v ON_ERROR_STOP=1` into `dbname` of `cluster`, its output captured; `run`: stdin= or
    input=, and any other subprocess.run keyword. The password goes in the environment, not the URL."""
    return subprocess.run(
        [
            os.path.join(cluster.bin_dir, "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            cluster.url(dbname, with_password=False),
        ],
        capture_output=True,
        env={**os.environ, "PGPASSWORD": cluster.password},
        **run,
    )


def restore(cluster: LocalCluster, backup: Path, dbname: str) -> None:
    """`gunzip -c FILE | psql -v ON_ERROR_STOP=1 TARGET` into a new empty database, as the README says."""
    cluster.create_database(dbname)
    gunzip = subprocess.Popen(["gunzip", "-c", str(backup)], stdout=subprocess.PIPE)
    result = psql_into(cluster, dbname, stdin=gunzip.stdout, text=True)
    gunzip.stdout.close()
    assert gunzip.wait() == 0, "gunzip failed"
    assert result.returncode == 0, f"restore failed: {result.stderr[-3000:]}"


_VOLATILE = ("\\restrict ", "\\unrestrict ", "-- Dumped ", "-- Started on", "-- Completed on")


def snapshot(cluster: LocalCluster, dbname: str) -> dict:
    """Schema, every table's rows, sequences and large objects of a database, in comparable form."""
    schema = subprocess.run(
        [
            os.path.join(cluster.bin_dir, "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-acl",
            cluster.url(dbname, with_password=False),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGPASSWORD": cluster.password},
    ).stdout
    schema = "\n".join(line for line in schema.splitlines() if not line.startswith(_VOLATILE))
    with cluster.connect(dbname) as db:
        tables = db.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
        ).fetchall()
        rows = {}
        for (table,) in tables:
            rows[table] = db.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
        sequences = db.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2").fetchall()
        large_objects = db.execute(
            "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid"
        ).fetchall()
    return {"schema": schema, "rows": rows, "sequences": sequences, "large_objects": large_objects}


def dump_sessions(cluster: LocalCluster) -> list[tuple]:
    """Sessions of the service's dumps (application_name `backup_svc-dump…`) on the cluster."""
    with cluster.connect() as db:
        return db.execute(
            "SELECT pid, application_name, state FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%'"
        ).fetchall()


def waiting_dump_sessions(cluster) -> list[tuple]:
    """Sessions of the service's dumps that wait for a lock."""
    with cluster.connect() as db:
        return db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%' "
            "AND wait_event_type = 'Lock'"
        ).fetchall()


class LockedTable:
    """An ACCESS EXCLUSIVE lock on a table, held by an open transaction (a migration, as pg_dump sees it)."""

    def __init__(self, cluster, dbname: str, table: str):
        self.db = cluster.connect(dbname)
        self.db.execute("BEGIN")
        self.db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if not self.db.closed:
            self.db.execute("ROLLBACK")
            self.db.close()


@contextlib.contextmanager
def owned_by_a_new_role(cluster: LocalCluster, prefix: str, *setup_sql: str):
    """A database owned by a new role that may create databases but is no superuser (as a service's
    role often is), `setup_sql` run in it as that role: yields (name, url, role). Afterwards every
    database whose name starts with its name (a restore's kept copies) and the role are dropped."""
    import psycopg

    role, password = f"svc_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    name = f"{prefix}_{secrets.token_hex(3)}"
    with cluster.connect() as db:
        db.execute(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
        db.execute(f'CREATE DATABASE "{name}" OWNER {role}')
    url = f"postgresql://{role}:{password}@127.0.0.1:{cluster.port}/{name}"
    with psycopg.connect(url, autocommit=True) as db:
        for statement in setup_sql:
            db.execute(statement)
    try:
        yield name, url, role
    finally:
        with cluster.connect() as db:
            names = [row[0] for row in db.execute("SELECT datname FROM pg_database").fetchall()]
            for other in names:
                if other.startswith(name):
                    db.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
            db.execute(f"DROP ROLE IF EXISTS {role}")
