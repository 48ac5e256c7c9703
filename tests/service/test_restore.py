"""`restore` into a real PostgreSQL: identical result, refusal of non-empty targets, all-or-nothing."""

from __future__ import annotations

import gzip
import os
import re
import socket

import pytest

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.files.psqlfeed import psql_command, stream_into_psql
from backup_svc.files.reader import CHUNK_SIZE, BadBackup
from tests.databases import restore, snapshot
from tests.processes import restore_cli, run_cli

LAST_STATEMENT = b"REFRESH MATERIALIZED VIEW app.mood_counts;"
OCCUPANT_SQL = """
    CREATE SCHEMA app;
    CREATE TABLE app.people (id int PRIMARY KEY, nickname text);
    INSERT INTO app.people VALUES (1, 'kept'), (2, 'also kept');
    CREATE TABLE public.keep (x int);
    INSERT INTO public.keep SELECT generate_series(1, 3);
"""
# What a production database looks like some time after its backup: changed rows, a new table.
DRIFT_SQL = """
    UPDATE app.people SET name = 'changed since the backup' WHERE id % 3 = 0;
    DELETE FROM app.cache;
    CREATE TABLE public.keep (x int);
    INSERT INTO public.keep SELECT generate_series(1, 3);
"""


@pytest.fixture(scope="module")
def rich_snapshot(rich_db, pg_cluster):
    return snapshot(pg_cluster, "rich")


def drifted_copy(pg_cluster, backup, dbname: str) -> None:
    """`dbname`: the backup restored the README's way, then changed (see DRIFT_SQL)."""
    restore(pg_cluster, backup, dbname)
    pg_cluster.psql(dbname, DRIFT_SQL)


def user_tables(pg_cluster, dbname: str) -> list[str]:
    with pg_cluster.connect(dbname) as db:
        return [
            r[0]
            for r in db.execute(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ]


def test_restore_into_empty_database_is_identical(backup, pg_cluster, rich_snapshot):
    pg_cluster.create_database("restored_empty")

    result = restore_cli(backup, pg_cluster.url("restored_empty"))

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"restored \S+ into 'restored_empty' \(PostgreSQL [\d.]+\) in \d+\.\d s: 5 tables with data, "
        r"\d+ bytes of SQL dumped from PostgreSQL .+ by pg_dump .+\n",
        result.stdout,
    )
    assert f"checked the start of {backup}" in result.stderr  # one pass: verified while restored
    assert snapshot(pg_cluster, "restored_empty") == rich_snapshot
    assert pg_cluster.password not in result.stdout + result.stderr


def test_restore_create_makes_the_database(backup, pg_cluster, rich_snapshot):
    with pg_cluster.connect() as db:
        db.execute("DROP DATABASE IF EXISTS restored_created")

    result = restore_cli(backup, pg_cluster.url("restored_created"), "--create")

    assert result.returncode == 0, result.stderr
    assert "created database 'restored_created'" in result.stderr
    assert snapshot(pg_cluster, "restored_created") == rich_snapshot

    again = restore_cli(backup, pg_cluster.url("restored_created"), "--create")
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_non_empty_target_is_refused_without_force(backup, pg_cluster):
    pg_cluster.create_database("occupied", OCCUPANT_SQL)
    before = snapshot(pg_cluster, "occupied")

    refused = restore_cli(backup, pg_cluster.url("occupied"))

    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "not empty: it holds 2 tables, views or sequences (e.g. app.people, public.keep)" in refused.stderr
    assert "--force" in refused.stderr
    assert snapshot(pg_cluster, "occupied") == before


def test_force_restores_over_a_changed_copy(backup, pg_cluster, rich_snapshot):
    drifted_copy(pg_cluster, backup, "drifted")
    before = snapshot(pg_cluster, "drifted")
    assert before["rows"] != {**rich_snapshot["rows"], "public.keep": before["rows"]["public.keep"]}

    result = restore_cli(backup, pg_cluster.url("drifted"), "--force")

    assert result.returncode == 0, result.stderr
    assert "--force: restoring over" in result.stderr
    after = snapshot(pg_cluster, "drifted")
    assert after["rows"].pop("public.keep") == before["rows"]["public.keep"]  # not in the backup: untouched
    assert after["rows"] == rich_snapshot["rows"]
    assert after["sequences"] == rich_snapshot["sequences"]
    assert after["large_objects"] == rich_snapshot["large_objects"]


def _broken_at_the_end(backup, tmp_path):
    """The real dump with its last statement broken, re-gzipped: verify passes, the restore cannot."""
    sql = gzip.decompress(backup.read_bytes())
    assert sql.count(LAST_STATEMENT) == 1
    broken = tmp_path / "broken.sql.gz"
    broken.write_bytes(gzip.compress(sql.replace(LAST_STATEMENT, b"REFRESH MATERIALIZED VIEW app.no_such_view;")))
    return broken


@pytest.mark.parametrize("forced", [False, True], ids=["empty-target", "forced-over-changed-copy"])
def test_failed_restore_leaves_target_unchanged(backup, pg_cluster, tmp_path, forced):
    """The backup holds large objects, whose own BEGIN/COMMIT must not end the single transaction."""
    broken = _broken_at_the_end(backup, tmp_path)
    assert run_cli("verify", str(broken)).returncode == 0
    if forced:
        drifted_copy(pg_cluster, backup, "half_restored")
    else:
        pg_cluster.create_database("half_restored")
    flags = ("--force",) if forced else ()
    before = snapshot(pg_cluster, "half_restored")

    result = restore_cli(broken, pg_cluster.url("half_restored"), *flags)

    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "backup_svc: restore failed: psql stopped at an error and the transaction was rolled back"
    )
    assert 'relation "app.no_such_view" does not exist' in last_line
    assert snapshot(pg_cluster, "half_restored") == before


def _truncated_after_the_whole_sql(backup, tmp_path):
    """The real dump with 3 MB of comments before its completion line, re-gzipped, then cut 100 bytes short.

    The reader hands the SQL on in 1 MiB chunks, and a chunk that meets the cut is lost with it: without
    the comments the whole dump is that chunk, so the header check would refuse the file before psql starts.
    With them every statement reaches psql before the cut shows."""
    sql = gzip.decompress(backup.read_bytes())
    hex_text = os.urandom(1_500_000).hex()
    padding = b"".join(b"-- %s\n" % hex_text[i : i + 100].encode() for i in range(0, len(hex_text), 100))
    assert len(padding) > 2 * CHUNK_SIZE
    ending = sql.index(b"--\n-- PostgreSQL database dump complete")
    truncated = tmp_path / "truncated.sql.gz"
    truncated.write_bytes(gzip.compress(sql[:ending] + padding + sql[ending:])[:-100])
    return truncated


def test_damaged_file_is_refused_and_nothing_is_committed(backup, pg_cluster, tmp_path):
    """Issue 25: the truncation shows only at the end of the one pass that restores (the file's start
    passes the up-front check), when psql has run every statement; it is killed before it commits, so
    the target is as it was."""
    truncated = _truncated_after_the_whole_sql(backup, tmp_path)
    pg_cluster.create_database("untouched")
    before = snapshot(pg_cluster, "untouched")

    result = restore_cli(truncated, pg_cluster.url("untouched"))

    assert result.returncode == 1
    assert f"checked the start of {truncated}" in result.stderr and "restoring into" in result.stderr
    assert f"backup_svc: restore refused: {truncated}: truncated" in result.stderr
    assert "nothing was restored" in result.stderr
    assert snapshot(pg_cluster, "untouched") == before  # no schema, row, sequence or large object
    assert user_tables(pg_cluster, "untouched") == []


def _truncated_gzip(data: bytes) -> bytes:
    return data[: len(data) * 3 // 4]


def _completion_line_removed(data: bytes) -> bytes:
    return gzip.compress(gzip.decompress(data).replace(b"-- PostgreSQL database dump complete\n", b""))


@pytest.mark.parametrize("damage", [_truncated_gzip, _completion_line_removed], ids=["truncated", "no-completion"])
def test_file_going_bad_during_the_stream_commits_nothing(backup, pg_cluster, tmp_path, damage):
    """Skips the up-front verify (as if the file changed after it) to check the in-stream guard:
    psql has run most statements when the damage shows, and must be killed before it commits."""
    damaged = tmp_path / "damaged.sql.gz"
    damaged.write_bytes(damage(backup.read_bytes()))
    pg_cluster.create_database("stream_guard")
    conn = parse_database_url(pg_cluster.url("stream_guard"))
    psql = f"{pg_cluster.bin_dir}/psql"

    with pytest.raises(BadBackup):
        stream_into_psql(str(damaged), psql_command(psql, conn))

    assert user_tables(pg_cluster, "stream_guard") == []


def test_psql_gets_the_password_through_its_environment(pg_cluster):
    conn = parse_database_url(pg_cluster.url("x", password="pw-in-url-1234567"))

    command = psql_command("/usr/bin/psql", conn)

    assert not any("pw-in-url-1234567" in arg for arg in command.argv)
    assert command.env["PGPASSWORD"] == "pw-in-url-1234567"
    assert {"ON_ERROR_STOP=1", "--single-transaction"} <= set(command.argv)


def test_unreachable_target_is_a_clear_error(backup, pg_cluster):
    """A port nothing listens on (bound, never listening: connections are refused), then a server that
    rejects the password; neither error shows the password."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = restore_cli(backup, f"postgresql://postgres:pw-to-nowhere-123@127.0.0.1:{closed.getsockname()[1]}/x")
    assert down.returncode == 1
    assert down.stderr.strip().splitlines()[-1].startswith("backup_svc: restore failed: cannot connect to the target")
    assert "Traceback" not in down.stderr and "pw-to-nowhere-123" not in down.stderr

    result = restore_cli(backup, pg_cluster.url("restored_empty", password="wrong-password-123"))

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("backup_svc: restore failed: cannot connect to the target")
    assert "password authentication failed" in result.stderr
    assert "wrong-password-123" not in result.stderr
