"""A backup downloaded over HTTP (and written by the CLI) restores into an identical database."""

from __future__ import annotations

import re

from tests.databases import restore, snapshot
from tests.http_client import gzip_is_valid
from tests.processes import run_cli


def test_http_backup_restores_identically(rich_service, pg_cluster, tmp_path):
    reply = rich_service.request("GET", "/api/v1/backup", rich_service.auth())

    assert reply.status == 200
    assert reply.complete
    assert reply.headers["Content-Type"] == "application/gzip"
    assert re.fullmatch(
        r'attachment; filename="rich_backup_\d{8}_\d{6}\.sql\.gz"', reply.headers["Content-Disposition"]
    )
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["X-Accel-Buffering"] == "no"
    assert reply.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in reply.headers
    assert gzip_is_valid(reply.body)

    backup = tmp_path / "rich.sql.gz"
    backup.write_bytes(reply.body)
    restore(pg_cluster, backup, "rich_restored_http")

    source, restored = snapshot(pg_cluster, "rich"), snapshot(pg_cluster, "rich_restored_http")
    assert restored["schema"] == source["schema"]
    assert restored["rows"] == source["rows"]
    assert restored["sequences"] == source["sequences"]
    assert restored["large_objects"] == source["large_objects"]
    # The comparison is only meaningful if the fixture really holds these objects.
    assert len(source["large_objects"]) == 2
    assert source["rows"]['"Mixed Case"."Order Items"'][0] == 500
    assert source["rows"]["app.cache"][0] == 2  # unlogged table data is included


def test_cli_dump_restores_identically(rich_db, pg_cluster, tmp_path):
    out = tmp_path / "cli.sql.gz"
    result = run_cli("dump", "-o", str(out), env={"DATABASE_URL": rich_db}, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert gzip_is_valid(out.read_bytes())
    assert not (tmp_path / "cli.sql.gz.partial").exists()
    restore(pg_cluster, out, "rich_restored_cli")
    assert snapshot(pg_cluster, "rich_restored_cli") == snapshot(pg_cluster, "rich")


def test_cli_dump_failure_leaves_no_file(pg_cluster, tmp_path):
    out = tmp_path / "nope.sql.gz"
    result = run_cli("dump", "-o", str(out), env={"DATABASE_URL": pg_cluster.url("does_not_exist")}, cwd=tmp_path)

    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert pg_cluster.password not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_database_info(rich_service):
    reply = rich_service.request("GET", "/api/v1/database", rich_service.auth())

    assert reply.status == 200
    info = reply.json()
    assert info["database"] == "rich"
    assert re.fullmatch(r"\d+\.\d+", info["server_version"])
    assert info["size_bytes"] > 1_000_000
    # app.people, "Order Items", events + 2 partitions, cache
    assert info["table_count"] == 6
    assert info["pg_dump"]["path"].endswith("/pg_dump")
    assert info["pg_dump"]["version"].split(".")[0] == info["server_version"].split(".")[0]
    assert info["pg_dump"]["caveat"] is None  # same major: no warning
    assert info["dumps_in_progress"] == 0
    assert info["compression"] == "isal (ISA-L) level 1"  # the default BACKUP_GZIP_LEVEL


def test_back_to_back_downloads_are_never_refused(rich_service):
    """The slot is free as soon as the last byte is out, not when the server closes the body later."""
    statuses = []
    for _ in range(5):
        reply = rich_service.request("GET", "/api/v1/backup", rich_service.auth())
        statuses.append((reply.status, reply.complete))
    assert statuses == [(200, True)] * 5
