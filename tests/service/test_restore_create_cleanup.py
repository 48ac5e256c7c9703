"""`restore --create` that fails drops the database it created, so that the retry is not refused with
"already exists". Real PostgreSQL, the CLI."""

from __future__ import annotations

import gzip

from tests.processes import run_cli


def databases(pg_cluster, name: str) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname = %s", (name,))]


def test_a_failed_restore_create_leaves_no_database_behind(backup, pg_cluster, tmp_path):
    """Issue 21, weaker finding: the empty database made by --create stayed and blocked the retry.
    The backup is a copy of a real dump with one statement the server rejects, added after its header."""
    sql = gzip.decompress(backup.read_bytes())
    head, sep, rest = sql.partition(b"\nSET ")
    broken = tmp_path / "broken.sql.gz"
    broken.write_bytes(gzip.compress(head + b"\nSELECT backup_svc_no_such_function();" + sep + rest))
    with pg_cluster.connect() as db:
        db.execute("DROP DATABASE IF EXISTS restored_broken")

    failed = run_cli("restore", str(broken), "--target-url", pg_cluster.url("restored_broken"), "--create")

    assert failed.returncode == 1, failed.stderr
    assert "backup_svc_no_such_function" in failed.stderr
    assert databases(pg_cluster, "restored_broken") == []
    assert "dropped database 'restored_broken'" in failed.stderr
    retried = run_cli("restore", str(backup), "--target-url", pg_cluster.url("restored_broken"), "--create")
    assert retried.returncode == 0, retried.stderr
