"""The compressed stream is standard gzip whichever library and level made it."""

from __future__ import annotations

import gzip
import subprocess

import pytest

from backup_svc.dump import compression
from backup_svc.dump.compression import SYNC_FLUSH, compressor_name, gzip_compressor
from tests.databases import restore, snapshot
from tests.http_client import gzip_is_valid

SQL = b"".join(b"INSERT INTO t VALUES (%d, 'row %d', '\\\\x%08x');\n" % (i, i, i * 7919) for i in range(50_000))


def _compress(level: int) -> bytes:
    compressor = gzip_compressor(level)
    half = len(SQL) // 2
    # a sync flush in the middle, as the pipeline emits while pg_dump is quiet
    return (
        compressor.compress(SQL[:half])
        + compressor.flush(SYNC_FLUSH)
        + compressor.compress(SQL[half:])
        + compressor.flush()
    )


@pytest.mark.parametrize("level", range(1, 10))  # every level BACKUP_GZIP_LEVEL accepts
@pytest.mark.parametrize("library", ["default", "stdlib fallback"])
def test_gzip_tools_read_every_level(level, library, monkeypatch, tmp_path):
    if library == "stdlib fallback":
        # Fault injection: pretend the isal package is not installed.
        monkeypatch.setattr(compression, "isal_zlib", None)
        assert compressor_name(level).startswith("zlib")
    data = _compress(level)
    path = tmp_path / "x.sql.gz"
    path.write_bytes(data)

    assert gzip.decompress(data) == SQL
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0
    assert subprocess.run(["gunzip", "-c", str(path)], capture_output=True).stdout == SQL
    assert len(data) < len(SQL) / 5


def test_isal_is_used_for_low_levels():
    assert compressor_name(1).startswith("isal")
    assert compressor_name(6).startswith("zlib")


def test_zlib_level_through_the_service_restores(rich_db, start_service, pg_cluster, tmp_path):
    service = start_service(DATABASE_URL=rich_db, BACKUP_GZIP_LEVEL="6")
    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["compression"] == "zlib level 6"
    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 200 and reply.complete and gzip_is_valid(reply.body)
    backup = tmp_path / "level6.sql.gz"
    backup.write_bytes(reply.body)
    restore(pg_cluster, backup, "rich_restored_level6")
    assert snapshot(pg_cluster, "rich_restored_level6") == snapshot(pg_cluster, "rich")
