"""Issue 25, item 2: a file restore reads the file once and verifies it while psql runs it (no
separate verify pass); what is cheap to check up front is still refused before anything is touched,
and a file found bad at the end leaves no database that `--create` made. Real PostgreSQL, the CLI."""

from __future__ import annotations

import gzip
import os

import pytest

from tests.processes import run_cli


def databases(pg_cluster, name: str) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname = %s", (name,))]


def _large(backup) -> bytes:
    """The fixture's dump with 8 MB of incompressible comment lines after its first statement, so
    that damage at the end is past what the up-front check reads (the first megabyte of SQL)."""
    sql = gzip.decompress(backup.read_bytes())
    head, sep, rest = sql.partition(b"\nSET ")
    padding = b"".join(b"-- " + os.urandom(48).hex().encode() + b"\n" for _ in range(80_000))
    return gzip.compress(head + b"\n" + padding + sep.lstrip(b"\n") + rest, compresslevel=1)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 3 // 4]


def _completion_line_removed(data: bytes) -> bytes:
    return gzip.compress(gzip.decompress(data).replace(b"-- PostgreSQL database dump complete\n", b""))


def _bad_crc(data: bytes) -> bytes:
    return data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:]  # the gzip trailer's CRC32


@pytest.mark.parametrize(
    "damage", [_truncated, _completion_line_removed, _bad_crc], ids=["truncated", "no-completion", "bad-crc"]
)
def test_a_file_found_bad_while_restoring_leaves_no_created_database(backup, pg_cluster, tmp_path, damage):
    damaged = tmp_path / "damaged.sql.gz"
    damaged.write_bytes(damage(_large(backup)))
    with pg_cluster.connect() as db:
        db.execute("DROP DATABASE IF EXISTS one_pass_bad")

    result = run_cli("restore", str(damaged), "--target-url", pg_cluster.url("one_pass_bad"), "--create")

    assert result.returncode == 1, result.stderr
    assert f"restore refused: {damaged}:" in result.stderr
    assert "created database 'one_pass_bad'" in result.stderr  # it got as far as restoring ...
    assert "dropped database 'one_pass_bad'" in result.stderr  # ... and put things back
    assert databases(pg_cluster, "one_pass_bad") == []
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [b"not a backup at all\n" * 100, gzip.compress(b"SELECT 1;\n" * 100)],
    ids=["not-gzip", "no-pg_dump-header"],
)
def test_what_is_cheap_to_check_is_still_refused_before_anything_is_created(pg_cluster, tmp_path, content):
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(content)
    with pg_cluster.connect() as db:
        db.execute("DROP DATABASE IF EXISTS one_pass_refused")

    result = run_cli("restore", str(bad), "--target-url", pg_cluster.url("one_pass_refused"), "--create")

    assert result.returncode == 1, result.stderr
    assert f"restore refused: {bad}:" in result.stderr
    assert "created database" not in result.stderr
    assert databases(pg_cluster, "one_pass_refused") == []


def test_a_good_file_is_restored_without_a_separate_verify_pass(backup, pg_cluster, tmp_path):
    """The restore's own pass is the verification: the separate verify step does not run, and the
    summary's facts, which only a full pass knows, come from the restoring pass. (The number of times the
    file is read is not counted: that would need strace.)"""
    with pg_cluster.connect() as db:
        db.execute("DROP DATABASE IF EXISTS one_pass_good")

    result = run_cli("restore", str(backup), "--target-url", pg_cluster.url("one_pass_good"), "--create")

    assert result.returncode == 0, result.stderr
    assert "the rest is verified while it is restored" in result.stderr
    assert "verified " + str(backup) not in result.stderr
    assert ": 5 tables with data, " in result.stdout  # counted by the restoring pass
    with pg_cluster.connect("one_pass_good") as db:
        assert db.execute("SELECT count(*) FROM app.people").fetchone()[0] > 0
