"""A client that leaves early, a database link that stalls, an immediate retry (issue 11): each frees the
one dump slot in time. Real gunicorn, real PostgreSQL, a loopback TCP proxy that freezes the link."""

from __future__ import annotations

import time

import pytest

from tests.databases import dump_sessions, waiting_dump_sessions
from tests.http_client import gzip_is_valid, read_within, timed
from tests.processes import pg_dump_pids, run_cli, wait_until
from tests.service_process import outcome_line


# -- a client that leaves before the first byte ------------------------------------------------
def test_client_leaving_during_a_lock_wait_stops_pg_dump_and_frees_the_slot(
    rich_db, start_service, pg_cluster, locked_cache
):
    """`curl -m 3` against a table a migration holds: nothing has been written to the client yet."""
    service = start_service(DATABASE_URL=rich_db)
    conn = service.connection()
    conn.request("GET", "/api/v1/backup?progress_id=left-early-0001", headers=service.auth())
    assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10)
    conn.close()
    left = time.monotonic()
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0), (
        "pg_dump or its session outlived the client by 2 s"
    )
    cleanup = time.monotonic() - left
    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["dumps_in_progress"] == 0
    line = outcome_line(service, "left-early-0001")
    assert line["outcome"] == "aborted" and "before the first byte" in line["error"]
    print(f"client gone during lock wait: pg_dump and session gone in {cleanup:.2f} s")


def test_client_leaving_while_the_database_link_is_frozen(rich_db, start_service, pg_cluster, db_proxy):
    """The link stalls before pg_dump even starts (the facts query hangs): the slot still comes back."""
    service = start_service(DATABASE_URL=db_proxy.url(pg_cluster, "rich"))
    assert service.request("HEAD", "/api/v1/backup", service.auth()).status == 200
    db_proxy.freeze()
    conn = service.connection()
    conn.request("GET", "/api/v1/backup?progress_id=left-frozen-001", headers=service.auth())
    time.sleep(1.0)
    conn.close()
    left = time.monotonic()
    line = outcome_line(service, "left-frozen-001", timeout_s=2.0)
    assert line is not None, "the slot was still taken 2 s after the client left"
    assert line["outcome"] == "aborted"
    print(f"client gone while the link is frozen: slot freed in {time.monotonic() - left:.2f} s")
    # ... and a new download is not turned away by the dead one
    conn = service.connection(timeout=30)
    conn.request("GET", "/api/v1/backup", headers=service.auth())
    db_proxy.thaw()
    resp = conn.getresponse()
    assert resp.status == 200
    conn.close()


# -- the database link stalls after the first byte ---------------------------------------------
def test_stalled_link_breaks_the_transfer_and_frees_everything(big_db, start_service, pg_cluster, db_proxy):
    service = start_service(DATABASE_URL=db_proxy.url(pg_cluster, "big"), BACKUP_STALL_TIMEOUT="8")
    conn, resp = service.start_download(timeout=60)
    assert resp.status == 200
    backup_id = resp.headers["X-Backup-Id"]
    first = resp.read(65536)
    db_proxy.freeze()
    frozen = time.monotonic()

    # While the link is frozen the service still answers, says the database is not answering, and
    # shows the running dump (an admin can see it and cancel it).
    info, seconds = timed(lambda: service.request("GET", "/api/v1/database", service.auth()))
    assert seconds < 7, f"/api/v1/database took {seconds:.1f} s"
    print(f"/api/v1/database while the link is frozen: {info.status} in {seconds:.2f} s")
    assert info.status == 504
    assert "not answering" in info.json()["message"]
    assert [d["id"] for d in info.json()["dumps"]] == [backup_id]
    page, seconds = timed(lambda: service.request("GET", "/", service.auth()))
    assert page.status == 200 and seconds < 7
    print(f"dashboard while the link is frozen: {page.status} in {seconds:.2f} s")
    assert b"not answering" in page.body

    rest, complete = read_within(resp, conn, 30)
    broken_after = time.monotonic() - frozen
    conn.close()
    assert not complete, "a stalled dump must end as a broken transfer"
    assert not gzip_is_valid(first + rest)
    assert 8 <= broken_after < 15, broken_after
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 2.0)
    line = outcome_line(service, backup_id)
    assert line["outcome"] == "failed" and "BACKUP_STALL_TIMEOUT" in line["error"]
    assert service.request("GET", "/healthz").status == 200
    after = service.request("GET", "/api/v1/database", service.auth()).json()  # still 504: the link is frozen
    assert (after["dumps_in_progress"], after["dumps"]) == (0, []), after  # the slot is free
    # (the server's end of pg_dump's session sits behind the frozen link: only the network can end it)
    print(f"stalled link: transfer broken {broken_after:.1f} s after the freeze (BACKUP_STALL_TIMEOUT=8)")


def test_pg_dump_silent_before_its_first_byte_gets_504(rich_db, start_service, pg_cluster, db_proxy):
    """The facts query gets through, then pg_dump's own connection stalls: no first byte ever comes."""
    service = start_service(
        DATABASE_URL=db_proxy.url(pg_cluster, "rich"), BACKUP_STALL_TIMEOUT="2", BACKUP_LOCK_TIMEOUT="1"
    )
    db_proxy.freeze_after(1)  # the service's facts query passes, pg_dump's connection is frozen
    reply, seconds = timed(lambda: service.request("GET", "/api/v1/backup", service.auth()))
    assert reply.status == 504, reply.body[:300]
    assert "not answering" in reply.json()["message"] and "no output for 3 s" in reply.json()["message"]
    assert 3 <= seconds < 7, seconds
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 2.0)
    print(f"pg_dump silent before its first byte: 504 after {seconds:.1f} s (stall 2 s + lock timeout 1 s)")


def test_stall_timeout_is_validated(rich_db):
    bad = run_cli("check", env={"DATABASE_URL": rich_db, "ADMIN_TOKEN": "t" * 20, "BACKUP_STALL_TIMEOUT": "0"})
    assert bad.returncode != 0
    assert "BACKUP_STALL_TIMEOUT must be between 1 and 86400" in bad.stdout + bad.stderr


# -- an immediate retry after an abort ---------------------------------------------------------
def test_abort_and_retry_at_once_never_meets_its_own_dead_download(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    statuses, waits = [], []
    started = time.monotonic()
    for _ in range(40):
        conn = service.connection(timeout=30)
        asked = time.monotonic()
        conn.request("GET", "/api/v1/backup", headers=service.auth())
        resp = conn.getresponse()
        waits.append(time.monotonic() - asked)
        statuses.append(resp.status)
        if resp.status == 200:
            resp.read(65536)
        conn.close()
        assert time.monotonic() - started < 120
    assert statuses == [200] * 40, f"{statuses.count(429)} of 40 immediate retries got 429"
    print(f"40 abort+retry loops: all 200, headers after at most {max(waits):.2f} s")
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 3.0)


def test_a_query_on_a_frozen_link_is_cut_at_its_deadline(rich_db, pg_cluster, db_proxy):
    """The service's own queries (facts, progress) on a link that froze after connecting."""
    from backup_svc.pg.conninfo import parse_database_url
    from backup_svc.pg.diagnose import NOT_ANSWERING
    from backup_svc.pg.facts import Deadline, connect

    conn = parse_database_url(db_proxy.url(pg_cluster, "rich"))
    with connect(conn, timeout_s=5, purpose="test") as db:
        assert db.execute("SELECT 1").fetchone() == (1,)
        db_proxy.freeze()
        started = time.monotonic()
        with Deadline(db, 1.5) as deadline, pytest.raises(Exception) as exc:
            db.execute("SELECT 2").fetchone()
        elapsed = time.monotonic() - started
    assert deadline.fired and 1.4 < elapsed < 3
    assert deadline.check(exc.value, None).kind == NOT_ANSWERING
