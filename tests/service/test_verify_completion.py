"""The pipeline's completion check: a pg_dump that exits 0 without its completion line breaks the stream.

The real pg_dump cannot be made to do that, so these tests inject the fault with a FAKE pg_dump: a
small Python script in a temporary PG_BIN_DIRS folder that reports the server's major for
`--version` and prints a dump's beginning (and, for the control case, its completion line), then
exits 0. Everything else is real: PostgreSQL (the service checks the server before running
pg_dump), gunicorn, the HTTP client, the CLI.
"""

from __future__ import annotations

import gzip
import stat
import sys

import pytest

from tests.http_client import gzip_is_valid
from tests.processes import run_cli
from tests.service_process import audit_records

FAKE_PG_DUMP = """#!{python}
import os, sys
if "--version" in sys.argv:
    print("pg_dump (PostgreSQL) {major}.99")
    sys.exit(0)
out = sys.stdout.buffer
out.write(b"--\\n-- PostgreSQL database dump\\n--\\n\\n-- Dumped from database version {major}.1\\n"
          b"-- Dumped by pg_dump version {major}.99\\n\\nCOPY public.t (x) FROM stdin;\\n")
# Incompressible rows (512 KiB), so that the end comes after several chunks were sent.
for _ in range({rows}):
    out.write(os.urandom(32 * 1024).hex().encode() + b"\\n")
out.write(b"\\\\.\\n\\n")
if {complete}:
    out.write(b"--\\n-- PostgreSQL database dump complete\\n--\\n\\n\\\\unrestrict abc\\n\\n")
sys.exit(0)
"""


def fake_pg_dump_dir(folder, pg_cluster, *, complete: bool, rows: int = 16) -> str:
    """A folder holding a fake `pg_dump` for the test cluster's major that exits 0."""
    with pg_cluster.connect() as db:
        major = int(db.execute("SHOW server_version_num").fetchone()[0]) // 10000
    script = folder / "pg_dump"
    script.write_text(FAKE_PG_DUMP.format(python=sys.executable, major=major, complete=complete, rows=rows))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(folder)


@pytest.mark.parametrize(
    "complete, rows",
    [(False, 16), (False, 0), (True, 16)],
    ids=["no-completion-line", "no-completion-line-tiny-dump", "control-complete"],
)
def test_stream_breaks_without_completion_line(start_service, rich_db, pg_cluster, tmp_path, complete, rows):
    """A tiny dump too: its failure comes before a full batch, yet must still break the transfer."""
    bin_dir = fake_pg_dump_dir(tmp_path, pg_cluster, complete=complete, rows=rows)
    service = start_service(DATABASE_URL=rich_db, PG_BIN_DIRS=bin_dir)

    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 200
    assert len(reply.body) > 0
    records = audit_records(service, reply.headers["X-Backup-Id"])
    assert len(records) == 1
    if complete:  # the control: the same fake with its completion line is a good, whole file
        assert reply.complete and gzip_is_valid(reply.body)
        assert gzip.decompress(reply.body).rstrip().endswith(b"\\unrestrict abc")
        assert records[0]["outcome"] == "ok" and records[0]["sha256"]
    else:
        assert not reply.complete
        assert not gzip_is_valid(reply.body)
        assert records[0]["outcome"] == "failed"
        assert "completion line" in records[0]["error"]
        assert records[0]["sha256"] is None
        assert "broken mid-stream" in service.log()


def test_cli_dump_fails_without_completion_line(rich_db, pg_cluster, tmp_path):
    bin_dir = fake_pg_dump_dir(tmp_path, pg_cluster, complete=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = run_cli("dump", "-o", "x.sql.gz", env={"DATABASE_URL": rich_db, "PG_BIN_DIRS": bin_dir}, cwd=out_dir)

    assert result.returncode == 1
    assert "completion line" in result.stderr
    assert result.stdout == ""  # no checksum for a failed dump
    assert list(out_dir.iterdir()) == []
