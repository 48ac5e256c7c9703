"""The progress API behind the dashboard (real gunicorn and PostgreSQL), its registry and its estimates."""

from __future__ import annotations

import threading
import time

import pytest

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.dump.attempt import DumpProgress
from backup_svc.dump.report import Delivery, ForwardPercent, data_fraction, progress_report
from backup_svc.dump.watch import CopySample, DumpWatch, TableEstimate
from backup_svc.dump.registry import BackupIdInUse, BackupRegistry
from tests.http_client import basic, gzip_is_valid
from tests.processes import pg_dump_pids, wait_until


def _report(service, backup_id: str):
    return service.request("GET", f"/api/v1/backups/{backup_id}", service.auth())


# -- over HTTP -----------------------------------------------------------------------------------
def test_finished_download_is_reported_done_under_the_client_id(rich_service):
    reply = rich_service.request("GET", "/api/v1/backup?progress_id=done-check-0001", rich_service.auth())
    assert reply.status == 200 and reply.complete and gzip_is_valid(reply.body)
    assert reply.headers["X-Backup-Id"] == "done-check-0001"

    report = _report(rich_service, "done-check-0001")
    assert report.status == 200 and report.headers["Cache-Control"] == "no-store"
    body = report.json()
    assert (body["state"], body["phase"], body["percent"], body["error"]) == ("done", "done", 100.0, None)
    assert body["bytes_sent"] == len(reply.body)
    assert f'filename="{body["filename"]}"' in reply.headers["Content-Disposition"]
    # rich.sql has five tables with data (the partitioned parent has none); the last one counts once
    # pg_dump moves on to what follows the data.
    assert (body["tables_done"], body["table_count"]) == (5, 5)


def test_reusing_a_progress_id_is_409(rich_service):
    assert rich_service.request("GET", "/api/v1/backup?progress_id=reused-id-0001", rich_service.auth()).status == 200
    again = rich_service.request("GET", "/api/v1/backup?progress_id=reused-id-0001", rich_service.auth())
    assert again.status == 409
    assert "another backup" in again.json()["message"]


@pytest.mark.parametrize("bad_id", ["short", "x" * 65, "has.dots.in.it", "space%20in%20it", "%C3%BCmlaut-id"])
def test_malformed_progress_ids_are_400(rich_service, bad_id):
    """One id rule (web/backup_id.py) for starting, following and cancelling a backup."""
    for method, path in (
        ("GET", f"/api/v1/backup?progress_id={bad_id}"),
        ("GET", f"/api/v1/backups/{bad_id}"),
        ("DELETE", f"/api/v1/backups/{bad_id}"),
    ):
        reply = rich_service.request(method, path, rich_service.auth())
        assert reply.status == 400, (method, path)
        assert "progress_id must be" in reply.json()["message"]


def test_unknown_progress_id_is_404(rich_service):
    reply = _report(rich_service, "never-started-0001")
    assert reply.status == 404
    assert reply.json()["error"] == "Not Found"


def test_progress_needs_credentials(rich_service):
    assert rich_service.request("GET", "/api/v1/backups/never-started-0001").status == 401
    assert rich_service.request("GET", "/api/v1/backups/never-started-0001", basic("admin", "wrong")).status == 401


def test_a_429_before_the_first_byte_is_kept_under_the_client_id(big_db, start_service, pg_cluster):
    """A page that saves the download through an iframe cannot read a 429: the progress API must say it."""
    service = start_service(DATABASE_URL=big_db)
    holder = service.connection()
    holder.request("GET", "/api/v1/backup?progress_id=holder-id-0001", headers=service.auth())
    response = holder.getresponse()
    assert response.status == 200 and len(response.read(65536)) == 65536
    try:
        refused = service.request("GET", "/api/v1/backup?progress_id=second-id-0001", service.auth())
        assert refused.status == 429
        body = _report(service, "second-id-0001").json()
        assert (body["state"], body["status"], body["percent"]) == ("refused", 429, None)
        assert body["error"] == refused.json()["message"]

        # Meanwhile the holder's dump is reported running, inside its only table, with a real estimate.
        assert wait_until(lambda: _report(service, "holder-id-0001").json()["phase"] == "data", 20)
        running = wait_until(
            lambda: (r := _report(service, "holder-id-0001").json())["estimate"] in ("copy-rows", "copy-bytes") and r,
            10,
        )  # the test cluster is PostgreSQL 14+
        assert running, "no COPY progress estimate"
        assert running["state"] == "running"
        assert running["table"] == {"name": "public.blobs", "number": 1, "count": 1}
        assert running["bytes_sent"] >= 65536 and running["finished_at"] is None
        # The client stopped reading: pg_dump is ahead by the buffers, the percent is of what it has.
        assert running["bytes_sent"] < running["bytes_made"] < running["bytes_expected"]
        assert 0 < running["percent"] <= 100 * running["bytes_sent"] / running["bytes_expected"] + 0.1
    finally:
        holder.close()
    assert wait_until(lambda: _report(service, "holder-id-0001").json()["state"] == "aborted", 5)
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)


def test_done_only_when_the_client_has_the_last_byte(rich_service):
    """A client that takes no byte never makes an attempt `done`, even once the whole dump fits in the
    network buffers; when it resets the connection the attempt is `aborted`, and the audit says so."""
    import socket
    import struct

    holder = rich_service.connection()
    holder.request("GET", "/api/v1/backup?progress_id=never-reads-0001", headers=rich_service.auth())
    response = holder.getresponse()  # the headers only: not one byte of the body is read
    assert response.status == 200
    time.sleep(2)  # plenty for the whole (small) dump to be made and written to the buffers
    stuck = _report(rich_service, "never-reads-0001").json()
    assert stuck["state"] == "running" and stuck["bytes_sent"] < stuck["bytes_made"], stuck
    assert stuck["percent"] < 99.9
    holder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
    holder.close()
    assert wait_until(lambda: _report(rich_service, "never-reads-0001").json()["state"] == "aborted", 5)
    gone = _report(rich_service, "never-reads-0001").json()
    assert gone["sha256"] is None and gone["percent"] is None
    assert wait_until(
        lambda: '"id": "never-reads-0001"' in rich_service.log() and '"outcome": "aborted"' in rich_service.log(), 5
    )

    reply = rich_service.request("GET", "/api/v1/backup?progress_id=reads-all-0001", rich_service.auth())
    done = _report(rich_service, "reads-all-0001").json()
    assert (done["state"], done["bytes_sent"], done["percent"]) == ("done", len(reply.body), 100.0)
    assert done["send_s"] is not None and done["rate_bytes_per_s"] > 0


def test_cannot_dump_is_kept_under_the_client_id(start_service, pg_cluster):
    service = start_service(DATABASE_URL=pg_cluster.url("no_such_db"))
    reply = service.request("GET", "/api/v1/backup?progress_id=missing-db-0001", service.auth())
    assert reply.status == 502
    body = _report(service, "missing-db-0001").json()
    assert (body["state"], body["status"]) == ("refused", 502)
    assert "does not exist" in body["error"] and pg_cluster.password not in body["error"]


# -- the cache in front of the database --------------------------------------------------------
def test_watch_queries_the_database_at_most_twice_a_second(rich_db):
    conn = parse_database_url(rich_db)
    watch = DumpWatch()
    watch.refresh(conn, "backup_svc-dump-none", now=100.0)
    assert watch.tables is not None and "app.people" in watch.tables
    assert watch.tables["app.people"].size_bytes > 0

    watch.tables = None  # a query would bring them back
    watch.refresh(conn, "backup_svc-dump-none", now=100.4)
    assert watch.tables is None
    watch.refresh(conn, "backup_svc-dump-none", now=100.6)
    assert watch.tables is not None


def test_watch_never_waits_for_another_pollers_query(rich_db):
    """Holding the (non-reentrant) lock stands for a poller whose query runs: waiting would deadlock."""
    watch = DumpWatch()
    with watch._lock:
        # in a thread with a deadline: a refresh that waited would hang the test instead of failing it
        waiter = threading.Thread(
            target=watch.refresh,
            args=(parse_database_url(rich_db), "backup_svc-dump-none"),
            kwargs={"now": 100.0},
            daemon=True,
        )
        waiter.start()
        waiter.join(timeout=10)
        assert not waiter.is_alive(), "refresh waited for the lock another poller holds"
    assert watch.tables is None  # it used the last sample (none yet) instead of querying


# -- estimates, without a database -------------------------------------------------------------
TABLES = {
    "s.small": TableEstimate(oid=1, size_bytes=100_000, rows=1000),
    "s.big": TableEstimate(oid=2, size_bytes=300_000, rows=3000),
}


def _progress(**fields) -> DumpProgress:
    progress = DumpProgress(started=1000.0)
    for name, value in fields.items():
        setattr(progress, name, value)
    return progress


@pytest.mark.parametrize(
    "copy,samples,expected,method",
    [
        # s.big makes 3000 rows; 1500 copied came to 600 kB of SQL, so it makes ~1.2 MB: 50 kB read is 1/24
        (
            CopySample(relid=2, bytes_processed=600_000, tuples_processed=1500),
            {},
            (100_000 + 300_000 / 24) / 400_000,
            "copy-rows",
        ),
        # never past 99 % of a table before the output moves on
        (
            CopySample(relid=2, bytes_processed=10_000, tuples_processed=1500),
            {},
            (100_000 + 0.99 * 300_000) / 400_000,
            "copy-rows",
        ),
        # the server has moved on to the next table: this table's last sample still tells its size
        (
            CopySample(relid=3, bytes_processed=5, tuples_processed=1),
            {2: CopySample(relid=2, bytes_processed=600_000, tuples_processed=1500)},
            (100_000 + 300_000 / 24) / 400_000,
            "copy-rows",
        ),
        # no sample of this table: as much SQL per byte on disk as the tables before it (150 kB for 100 kB)
        (
            CopySample(relid=1, bytes_processed=0, tuples_processed=1000),
            {},
            (100_000 + 50_000 / 1.5) / 400_000,
            "tables",
        ),
        (None, {}, (100_000 + 50_000 / 1.5) / 400_000, "tables"),
    ],
)
def test_data_fraction(copy, samples, expected, method):
    progress = _progress(
        phase="data", current_table="s.big", tables=["s.small", "s.big"], sql_bytes=200_000, table_sql_start=150_000
    )
    fraction, used = data_fraction(progress, TABLES, copy, samples=samples)
    assert fraction == pytest.approx(expected) and used == method


def test_data_fraction_of_the_first_table_without_a_sample_counts_its_sql_against_its_size_on_disk():
    """Its COPY can end before the first poll (the buffers hold many MB): it is not stuck at 0 %."""
    progress = _progress(phase="data", current_table="s.small", tables=["s.small"], sql_bytes=60_000)
    fraction, used = data_fraction(progress, TABLES, None)
    assert (fraction, used) == (pytest.approx(60_000 / 400_000), "output-bytes")


def test_data_fraction_of_the_first_table_without_a_sample_takes_the_sql_per_byte_of_a_later_tables_sample():
    """s.big's 1500 of 3000 rows made 600 kB: 1.2 MB for 300 kB on disk, 4 bytes of SQL per byte on disk."""
    progress = _progress(phase="data", current_table="s.small", tables=["s.small"], sql_bytes=100_000)
    later = CopySample(relid=2, bytes_processed=600_000, tuples_processed=1500)
    fraction, used = data_fraction(progress, TABLES, later)
    assert (fraction, used) == (pytest.approx(100_000 / 4 / 400_000), "tables")


def test_data_fraction_without_copy_progress_counts_the_tables_sql():
    """PostgreSQL < 14: the SQL written since the table started, against the table's size."""
    progress = _progress(
        phase="data", current_table="s.big", tables=["s.small", "s.big"], sql_bytes=200_000, table_sql_start=50_000
    )
    fraction, used = data_fraction(progress, TABLES, None, copy_supported=False)
    assert (fraction, used) == (pytest.approx((100_000 + 150_000) / 400_000), "output-bytes")


def test_data_fraction_of_a_table_without_a_row_count_counts_bytes():
    tables = {"s.new": TableEstimate(oid=5, size_bytes=1_000_000, rows=-1)}
    progress = _progress(phase="data", current_table="s.new", tables=["s.new"], sql_bytes=400_000)
    fraction, used = data_fraction(progress, tables, CopySample(relid=5, bytes_processed=250_000, tuples_processed=9))
    assert (fraction, used) == (pytest.approx(0.25), "copy-bytes")  # the output read (400 kB) is behind the server


def test_the_shown_percent_never_goes_back():
    shown = ForwardPercent()
    assert [shown.advance(p) for p in (None, 10.0, 74.0, 55.0, None, 80.0, 79.0)] == [None, 10, 74, 74, 74, 80, 80]


def test_report_never_says_done_before_the_response_is_closed():
    progress = _progress(phase="done", outcome="ok", finished=1010.0, gzip_bytes=5000, tables=["s.small", "s.big"])
    watch = DumpWatch()
    running = progress_report("id-00000001", "f.sql.gz", progress, running=True, status=200, watch=watch, now=1010.0)
    assert (running["state"], running["phase"], running["percent"]) == ("running", "sending", 99.0)
    done = progress_report("id-00000001", "f.sql.gz", progress, running=False, status=200, watch=watch, now=1011.0)
    assert (done["state"], done["percent"], done["elapsed_s"], done["table_count"]) == ("done", 100.0, 10.0, 2)


def test_report_of_a_failed_dump_has_its_error_and_no_percent():
    progress = _progress(
        phase="failed", outcome="failed", error="pg_dump exited with status 1 mid-stream: x", finished=1003.0
    )
    report = progress_report(
        "id-00000001", "f.sql.gz", progress, running=True, status=200, watch=DumpWatch(), now=1004.0
    )
    assert (report["state"], report["percent"], report["eta_s"]) == ("failed", None, None)
    assert report["error"].startswith("pg_dump exited with status 1")


def test_report_measures_the_bytes_the_client_has_and_the_time_left_at_the_recent_rate():
    watch = DumpWatch()
    watch.tables, watch.copy_supported = TABLES, True
    watch.copy = CopySample(relid=2, bytes_processed=600_000, tuples_processed=1500)
    progress = _progress(
        phase="data",
        current_table="s.big",
        tables=["s.small", "s.big"],
        sql_bytes=800_000,
        table_sql_start=200_000,
        gzip_bytes=40_000,
    )
    # The output is half-way through s.big (600 kB of its ~1.2 MB): 1 % schema + 98 % × (100k + 150k of
    # 400k) = 62.25 % of the dump; the client has half of the 40 kB made so far, at 2 kB/s lately.
    report = progress_report(
        "id-00000001",
        "f.sql.gz",
        progress,
        running=True,
        status=200,
        watch=watch,
        now=1010.0,
        delivery=Delivery(bytes=20_000, rate=2000.0),
    )
    assert report["bytes_expected"] == round(40_000 / 0.6225)
    assert report["percent"] == pytest.approx(100 * 20_000 / (40_000 / 0.6225), abs=0.05)
    assert report["eta_s"] == pytest.approx((40_000 / 0.6225 - 20_000) / 2000, abs=0.1)
    assert (report["bytes_sent"], report["bytes_made"], report["rate_bytes_per_s"]) == (20_000, 40_000, 2000)
    assert report["table"] == {"name": "s.big", "number": 2, "count": 2}


def test_a_finished_report_has_the_rate_of_the_real_send():
    progress = _progress(phase="done", outcome="ok", finished=1030.0, gzip_bytes=25_400_000, sha256="ab" * 32)
    report = progress_report(
        "id-00000001",
        "f.sql.gz",
        progress,
        running=False,
        status=200,
        watch=DumpWatch(),
        now=1031.0,
        delivery=Delivery(bytes=25_400_000, send_s=12.7),
    )
    assert (report["state"], report["percent"], report["bytes_sent"]) == ("done", 100.0, 25_400_000)
    assert (report["rate_bytes_per_s"], report["send_s"], report["elapsed_s"]) == (2_000_000, 12.7, 30.0)


# -- the registry --------------------------------------------------------------------------------
def test_registry_keeps_refusals_and_rejects_reused_ids():
    registry = BackupRegistry(limit=1)
    first = registry.try_begin("a.sql.gz", "admin", "first-id-0001")
    assert first is not None and registry.is_running("first-id-0001")
    with pytest.raises(BackupIdInUse):
        registry.try_begin("b.sql.gz", "admin", "first-id-0001")
    assert registry.try_begin("b.sql.gz", "admin", "second-id-0001") is None
    registry.refused("second-id-0001", "b.sql.gz", "admin", 429, "busy")
    second = registry.get("second-id-0001")
    assert (second.status, second.progress.outcome, second.progress.error) == (429, "refused", "busy")
    with pytest.raises(BackupIdInUse):  # a kept refusal's id is not free again either
        registry.try_begin("b.sql.gz", "admin", "second-id-0001")

    registry.end(first, status=502, error="unreachable")
    assert not registry.is_running("first-id-0001") and registry.running_count() == 0
    assert registry.get("first-id-0001").status == 502
    with pytest.raises(BackupIdInUse):
        registry.try_begin("c.sql.gz", "admin", "first-id-0001")


def test_registry_forgets_the_oldest_past_its_limit():
    registry = BackupRegistry(limit=1, keep_n=2)
    for n in range(3):
        registry.refused(f"refused-id-{n:04d}", "x.sql.gz", "admin", 429, "busy")
    assert registry.get("refused-id-0000") is None
    assert registry.get("refused-id-0001") is not None and registry.get("refused-id-0002") is not None
