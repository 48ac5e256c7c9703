"""Fixtures: a real PostgreSQL cluster (run unprivileged), databases, and real service processes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backup_svc.config import default_pg_bin_dirs
from backup_svc.localpg import LocalCluster, find_server_bin_dir

from .support import Service

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the session (the newest installed major)."""
    bin_dirs = [d for d in os.environ.get("PG_BIN_DIRS", "").split(":") if d] or default_pg_bin_dirs()
    with LocalCluster(find_server_bin_dir(bin_dirs)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rich_db(pg_cluster) -> str:
    """URL of a database holding many kinds of objects (tests/data/rich.sql)."""
    return pg_cluster.create_database("rich", (DATA / "rich.sql").read_text())


@pytest.fixture(scope="session")
def big_db(pg_cluster) -> str:
    """URL of a database whose dump (~60 MB gzipped) outlasts socket and pipe buffers."""
    return pg_cluster.create_database("big", """
        CREATE EXTENSION pgcrypto;
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO blobs SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000) FROM generate_series(1, 20000) g;
    """)


@pytest.fixture
def start_service(tmp_path):
    """Factory: start `python -m backup_svc serve` with extra environment; all are stopped afterwards."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        service = Service(env, tmp_path / f"service-{len(started)}.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def rich_service(rich_db, pg_cluster, tmp_path_factory):
    """A service backing up the rich database, shared by a module's tests."""
    service = Service({"DATABASE_URL": rich_db}, tmp_path_factory.mktemp("svc") / "service.log").start()
    yield service
    service.stop()
