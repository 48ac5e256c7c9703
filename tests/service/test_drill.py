"""Restore drills against the real PostgreSQL fixtures: a good backup proves restorable with the
right row counts; a damaged one, wrong counts or the source as target do not; nothing is left behind."""

from __future__ import annotations

import io
import os

import pytest
from psycopg import sql

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.notify.drill import SCRATCH_PREFIX, run_drill
from backup_svc.dump.rowcount import counts_metadata

from tests.processes import run_cli

RICH_TABLES = {  # what tests/data/rich.sql puts in each table that holds data
    ("app", "people"): 2003,
    ("Mixed Case", "Order Items"): 500,
    ("app", "events_2025"): 213,
    ("app", "events_2026"): 187,
    ("app", "cache"): 2,
}


@pytest.fixture(scope="module")
def source_counts(pg_cluster, rich_db):
    """Row counts read from the source itself (not from any backup)."""
    with pg_cluster.connect("rich") as db:
        return {
            name: db.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(*name))).fetchone()[0]
            for name in RICH_TABLES
        }


def scratch_databases(pg_cluster) -> list[str]:
    with pg_cluster.connect() as db:
        return [
            r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (SCRATCH_PREFIX + "%",))
        ]


def drill(path, pg_cluster, rich_db, **kwargs):
    lines: list[str] = []
    report = run_drill(
        str(path),
        os.path.basename(path),
        parse_database_url(pg_cluster.url("postgres")),
        source=parse_database_url(rich_db),
        bin_dirs=[pg_cluster.bin_dir],
        say=lines.append,
        **kwargs,
    )
    return report, lines


def test_source_counts_are_what_the_test_expects(source_counts):
    assert source_counts == RICH_TABLES


def test_a_stored_backup_counts_rows_as_it_is_taken(rich_db, source_counts):
    """The dump-time record: write_backup(count_rows=True) sees every table's rows as pg_dump writes them."""
    from backup_svc.config import Settings
    from backup_svc.dump.backup import write_backup

    sink = io.BytesIO()
    written = write_backup(
        Settings.from_env({"DATABASE_URL": rich_db}, require_auth=False).dump,
        sink,
        application_name="backup_svc-test",
        count_rows=True,
    )

    assert written.table_rows == source_counts
    assert written.gzip_bytes == len(sink.getvalue())


def test_drill_restores_and_counts_rows_from_the_backup(backup, pg_cluster, rich_db, source_counts):
    report, lines = drill(backup, pg_cluster, rich_db)

    assert report.outcome == "ok", report.error
    assert (report.tables, report.rows) == (len(source_counts), sum(source_counts.values()))
    assert report.counts_from == "the backup's own COPY data"
    assert report.mismatches == []
    assert report.seconds > 0 and report.bytes == backup.stat().st_size
    assert report.scratch.startswith(SCRATCH_PREFIX)
    assert f"dropped scratch database {report.scratch!r}" in lines
    assert scratch_databases(pg_cluster) == []
    event = report.event("rich")
    assert (event.kind, event.outcome, event.details["rows"]) == ("drill", "ok", sum(RICH_TABLES.values()))
    assert pg_cluster.password not in "\n".join(lines) + str(report.as_dict())


def test_drill_compares_with_dump_time_metadata(backup, pg_cluster, rich_db, source_counts):
    report, _ = drill(backup, pg_cluster, rich_db, metadata={**counts_metadata(source_counts), "sha256": "ab" * 32})

    assert report.outcome == "ok", report.error
    assert report.counts_from == "dump-time metadata"
    assert report.sha256 == "ab" * 32


def test_drill_reports_rows_that_differ_from_dump_time(backup, pg_cluster, rich_db, source_counts):
    recorded = {**source_counts, ("app", "people"): source_counts[("app", "people")] + 5, ("app", "vanished"): 7}

    report, _ = drill(backup, pg_cluster, rich_db, metadata=counts_metadata(recorded))

    assert report.outcome == "failed"
    assert report.mismatches == [
        "app.people: 2003 rows restored, 2008 recorded at dump time",
        "app.vanished: missing after the restore (expected 7 rows)",
    ]
    assert report.error.startswith("row counts differ after the restore: app.people: 2003 rows restored")
    assert scratch_databases(pg_cluster) == []


def test_drill_of_a_bit_flipped_backup_fails(backup, pg_cluster, rich_db, tmp_path):
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged = tmp_path / "rich_damaged.sql.gz"
    damaged.write_bytes(bytes(data))

    report, _ = drill(damaged, pg_cluster, rich_db)

    assert report.outcome == "failed"
    assert report.error.startswith("the backup is damaged: corrupt gzip data"), report.error
    assert report.event("rich").failed
    assert scratch_databases(pg_cluster) == []


def test_drill_refuses_the_backed_up_database(backup, pg_cluster, rich_db):
    report = run_drill(
        str(backup),
        "rich.sql.gz",
        parse_database_url(rich_db),
        source=parse_database_url(rich_db),
        bin_dirs=[pg_cluster.bin_dir],
    )

    assert report.outcome == "failed"
    assert report.error == "RESTORE_DRILL_URL points at the backed-up database; refusing to restore there"
    assert report.scratch == "" and scratch_databases(pg_cluster) == []


def test_drill_with_a_wrong_password_says_so_without_it(backup, pg_cluster, rich_db):
    wrong = "not-the-Password-42"
    target = parse_database_url(pg_cluster.url("postgres", password=wrong))

    report = run_drill(str(backup), "rich.sql.gz", target, bin_dirs=[pg_cluster.bin_dir], timeout_s=5)

    assert report.outcome == "failed"
    assert report.error.startswith("cannot create the scratch database on the drill server (127.0.0.1): cannot connect")
    assert "password authentication failed" in report.error
    assert wrong not in report.error


def test_drill_of_a_latin1_database_keeps_its_encoding(pg_cluster, tmp_path):
    """The scratch database gets the backup's encoding, as `restore --create` does: a LATIN1 dump
    restored into UTF8 would be a different database (and an SQL_ASCII one might not restore at all)."""
    with pg_cluster.connect() as db:
        db.execute("CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1'")
    pg_cluster.psql(
        "latin", "CREATE TABLE t (s text); INSERT INTO t SELECT 'caf' || chr(233) FROM generate_series(1, 7);"
    )
    url = pg_cluster.url("latin")
    assert run_cli("dump", "-o", "latin.sql.gz", env={"DATABASE_URL": url}, cwd=tmp_path).returncode == 0

    report, lines = drill(tmp_path / "latin.sql.gz", pg_cluster, url)

    assert report.outcome == "ok", report.error
    assert (report.tables, report.rows) == (1, 7)
    assert any(
        line.startswith(f"created scratch database {report.scratch!r} with the backup's encoding LATIN1")
        for line in lines
    ), lines
