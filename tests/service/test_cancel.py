"""`DELETE /api/v1/backups/<id>` against a real gunicorn and PostgreSQL (issue 11): a running transfer is
broken, a waiting one gets 409, a stream blocked on a client that reads nothing is cut, browsers only same-origin."""

from __future__ import annotations

import time

from tests.databases import dump_sessions, waiting_dump_sessions
from tests.http_client import gzip_is_valid, read_within, timed
from tests.processes import pg_dump_pids, wait_until
from tests.service_process import outcome_line


# -- cancel ------------------------------------------------------------------------------------
def _delete(service, backup_id: str, headers: dict[str, str] | None = None):
    return service.request("DELETE", f"/api/v1/backups/{backup_id}", {**service.auth(), **(headers or {})})


def test_cancel_breaks_a_running_transfer_and_says_who(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn, resp = service.start_download(timeout=60)
    backup_id = resp.headers["X-Backup-Id"]
    first = resp.read(65536)

    reply, seconds = timed(lambda: _delete(service, backup_id))
    assert reply.status == 200, reply.body
    assert reply.json()["state"] == "cancelled" and reply.json()["error"] == "cancelled by token"
    rest, complete = read_within(resp, conn, 10)
    conn.close()
    assert not complete and not gzip_is_valid(first + rest)
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0)
    line = outcome_line(service, backup_id)
    assert line["outcome"] == "cancelled" and line["error"] == "cancelled by token"
    assert _delete(service, backup_id).status == 409  # over already
    print(f"cancel mid-stream: answered in {seconds:.2f} s")


def test_cancel_works_when_the_client_reads_nothing(big_db, start_service, pg_cluster):
    """A stream blocked in a write to a client that stopped reading: its connection is cut."""
    service = start_service(DATABASE_URL=big_db)
    conn, resp = service.start_download(timeout=60)
    backup_id = resp.headers["X-Backup-Id"]

    def sent():
        return service.request("GET", f"/api/v1/backups/{backup_id}", service.auth()).json()["bytes_sent"]

    readings = [sent()]

    def blocked():  # the socket buffers are full: nothing more is sent for a second
        time.sleep(1.0)
        readings.append(sent())
        return readings[-1] == readings[-2]

    assert wait_until(blocked, 20), "the stream should be blocked on the client that reads nothing"
    reply, seconds = timed(lambda: _delete(service, backup_id))
    assert reply.status == 200 and seconds < 6
    print(f"cancel of a stream blocked on a client reading nothing: slot free in {seconds:.2f} s")
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 2.0)
    # the slot is free although the client has still read nothing
    assert service.request("GET", "/api/v1/database", service.auth()).json()["dumps_in_progress"] == 0
    _, complete = read_within(resp, conn, 20)
    conn.close()
    assert not complete
    assert outcome_line(service, backup_id)["outcome"] == "cancelled"


def test_cancel_during_a_lock_wait_answers_409(rich_db, start_service, pg_cluster, locked_cache):
    service = start_service(DATABASE_URL=rich_db)
    conn = service.connection(timeout=30)
    conn.request("GET", "/api/v1/backup?progress_id=cancel-waiting-1", headers=service.auth())
    assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10)
    assert _delete(service, "cancel-waiting-1").status == 200
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 409 and b"cancelled by token" in body
    print("cancel during a lock wait: the waiting client got 409")
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0)


def test_cancel_only_from_this_service_s_pages_or_scripts(rich_db, start_service, pg_cluster, locked_cache):
    service = start_service(DATABASE_URL=rich_db)
    conn = service.connection(timeout=30)
    conn.request("GET", "/api/v1/backup?progress_id=cancel-guarded-1", headers=service.auth())
    try:
        assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10)
        for headers in (
            {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
            {"Origin": "https://evil.example"},
            {"Origin": f"http://localhost:{service.port}"},
        ):
            assert _delete(service, "cancel-guarded-1", headers).status == 403, headers
        anonymous = service.request("DELETE", "/api/v1/backups/cancel-guarded-1")
        assert anonymous.status == 401
        assert _delete(service, "no-such-backup-1").status == 404
        assert waiting_dump_sessions(pg_cluster), "a refused cancel must not stop the dump"
        same_origin = {"Sec-Fetch-Site": "same-origin", "Origin": service.base_url}
        assert _delete(service, "cancel-guarded-1", same_origin).status == 200
        assert conn.getresponse().status == 409
    finally:
        conn.close()
    # a script: the token and no browser header at all
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0)
    conn = service.connection(timeout=30)
    conn.request("GET", "/api/v1/backup?progress_id=cancel-guarded-2", headers=service.auth())
    try:
        assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10)
        assert _delete(service, "cancel-guarded-2").status == 200
        assert conn.getresponse().status == 409
    finally:
        conn.close()
