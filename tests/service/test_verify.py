"""`verify` on real backups (downloaded from a real service, written by `dump`) and on damaged copies;
the SHA-256 the service and the CLI report is that of the bytes the client got."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess

import pytest

from tests.processes import run_cli
from tests.service_process import audit_records

COMPLETION = b"-- PostgreSQL database dump complete"


@pytest.fixture(scope="module")
def download(rich_service, tmp_path_factory):
    """One complete backup of the rich database, downloaded over HTTP: (file, reply)."""
    reply = rich_service.request("GET", "/api/v1/backup", rich_service.auth())
    assert reply.status == 200 and reply.complete
    path = tmp_path_factory.mktemp("download") / "rich.sql.gz"
    path.write_bytes(reply.body)
    return path, reply


def test_verify_accepts_a_downloaded_backup(download, rich_service):
    path, reply = download
    info = rich_service.request("GET", "/api/v1/database", rich_service.auth()).json()
    sql = gzip.decompress(reply.body)
    copies = len(re.findall(rb"^COPY .* FROM stdin;$", sql, re.M))

    result = run_cli("verify", str(path))

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{len(reply.body)} bytes (gzip), {len(sql)} bytes of SQL" in out
    assert re.search(rf"dumped from: +PostgreSQL {re.escape(info['server_version'])}\b", out)
    assert re.search(rf"dumped by: +pg_dump {re.escape(info['pg_dump']['version'])}\b", out)
    assert copies == 5  # "Order Items", cache, two event partitions, people
    assert re.search(rf"tables with data: +{copies} ", out)
    assert f"sha256:           {hashlib.sha256(reply.body).hexdigest()}" in out


def test_service_reports_sha256_of_the_bytes_sent(download, rich_service):
    _, reply = download
    records = audit_records(rich_service, reply.headers["X-Backup-Id"])

    assert len(records) == 1
    assert records[0]["outcome"] == "ok"
    assert records[0]["bytes"] == len(reply.body)
    assert records[0]["sha256"] == hashlib.sha256(reply.body).hexdigest()


def test_dump_prints_sha256_of_the_written_file(rich_db, tmp_path):
    result = run_cli("dump", "-o", "rich.sql.gz", env={"DATABASE_URL": rich_db}, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256((tmp_path / "rich.sql.gz").read_bytes()).hexdigest()
    assert result.stdout == f"{digest}  rich.sql.gz\n"
    check = subprocess.run(["sha256sum", "-c"], input=result.stdout, cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and "rich.sql.gz: OK" in check.stdout
    assert run_cli("verify", str(tmp_path / "rich.sql.gz")).returncode == 0


def _truncated(body: bytes) -> bytes:
    return body[: len(body) // 2]


def _bit_flipped(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x10]) + body[middle + 1 :]


def _regzipped(edit):
    return lambda body: gzip.compress(edit(gzip.decompress(body)))


def _without_completion_line(sql: bytes) -> bytes:
    assert sql.count(COMPLETION) == 1
    return sql.replace(COMPLETION + b"\n", b"")


def _cut_in_copy_data(sql: bytes) -> bytes:
    """What a dump killed half-way looks like once someone gzipped what there was."""
    start = sql.index(b"\nCOPY app.people ")
    return sql[: start + 5000]


def _garbage_after_completion(sql: bytes) -> bytes:
    return sql + b"DROP TABLE app.people;\n"


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncated, "truncated: the gzip stream ends before its end marker"),
        (_bit_flipped, "corrupt gzip data"),
        (_regzipped(_without_completion_line), "ends without pg_dump's completion line"),
        (_regzipped(_cut_in_copy_data), "ends inside a COPY statement's data"),
        (_regzipped(_garbage_after_completion), "ends without pg_dump's completion line"),
        (lambda body: b"", "the file is empty"),
        (lambda body: gzip.decompress(body), "not a compressed backup"),
        (lambda body: gzip.compress(b"SELECT 1;\n"), "not a plain pg_dump"),
    ],
    ids=[
        "truncated",
        "bit-flipped",
        "no-completion-line",
        "cut-in-copy",
        "sql-after-completion",
        "empty",
        "not-gzip",
        "not-a-dump",
    ],
)
def test_verify_rejects_a_damaged_backup(download, tmp_path, damage, reason):
    path, reply = download
    damaged = tmp_path / "damaged.sql.gz"
    damaged.write_bytes(damage(reply.body))

    result = run_cli("verify", str(damaged))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert result.stderr.startswith(f"backup_svc: verify failed: {damaged}: ")
    assert reason in result.stderr
