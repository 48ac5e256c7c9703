"""Every failure in the contract, caused for real against a real PostgreSQL and a real gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from tests.databases import dump_sessions
from tests.http_client import gzip_is_valid, read_all
from tests.processes import all_pids, cmdline, pg_dump_pids, wait_until
from tests.service_process import curl_with_dump_killed


def _start_download(service, read_bytes: int = 65536):
    """Open a backup download, read its headers and `read_bytes` of body, then stop reading."""
    conn, resp = service.start_download()
    assert resp.status == 200
    first = resp.read(read_bytes)
    assert len(first) == read_bytes
    return conn, resp, first


# -- before the first byte: a status, not a stream -------------------------------------------
def test_unreachable_host_is_502(start_service, pg_cluster):
    closed_port = pg_cluster.port + 1 if pg_cluster.port < 65535 else 1
    service = start_service(DATABASE_URL=f"postgresql://postgres:secret-pw-123@127.0.0.1:{closed_port}/x")
    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 502
    body = reply.json()
    assert body["error"] == "Bad Gateway"
    assert "Cannot reach the database server" in body["message"]
    assert "secret-pw-123" not in reply.body.decode()


def test_wrong_password_is_502_and_not_echoed(start_service, pg_cluster):
    service = start_service(DATABASE_URL=pg_cluster.url("rich", password="wrong-password-xyz"))
    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 502
    assert "rejected the user or password" in reply.json()["message"]
    assert "wrong-password-xyz" not in reply.body.decode()
    assert "wrong-password-xyz" not in service.log()


def test_missing_database_is_502(start_service, pg_cluster):
    service = start_service(DATABASE_URL=pg_cluster.url("no_such_db"))
    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 502
    message = reply.json()["message"]
    assert "does not exist" in message and "no_such_db" in message
    assert pg_cluster.password not in reply.body.decode()


def test_readyz_reports_unreachable_database(start_service, pg_cluster):
    """A database the server does not have, then a port nothing listens on (bound, never listening)."""
    service = start_service(DATABASE_URL=pg_cluster.url("no_such_db"))
    reply = service.request("GET", "/readyz")

    assert reply.status == 503
    assert reply.json()["error"] == "Service Unavailable"
    assert pg_cluster.password not in reply.body.decode()
    assert service.request("GET", "/healthz").status == 200  # liveness touches no database

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = start_service(DATABASE_URL=f"postgresql://postgres:pw-x-123@127.0.0.1:{closed.getsockname()[1]}/x")
        down = nowhere.request("GET", "/readyz")
    assert down.status == 503 and down.json()["error"] == "Service Unavailable"
    assert "pw-x-123" not in down.body.decode()


def test_readyz_ok(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db)
    reply = service.request("GET", "/readyz")
    assert reply.status == 200
    assert reply.json()["status"] == "ready"


def test_second_dump_gets_429_while_one_runs(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn, _, _ = _start_download(service)
    try:
        reply = service.request("GET", "/api/v1/backup", service.auth())
        assert reply.status == 429
        assert reply.headers["Retry-After"].isdigit()
        assert "already running" in reply.json()["message"]
    finally:
        conn.close()
    # The slot comes back once the first download is gone.
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)
    again = service.request("HEAD", "/api/v1/backup", service.auth())
    assert again.status == 200

    # HEAD starts no dump and so never meets a taken slot: the slot itself, and a GET that gets one
    def running() -> int:
        return service.request("GET", "/api/v1/database", service.auth()).json()["dumps_in_progress"]

    assert wait_until(lambda: running() == 0, 5), running()
    conn, resp = service.start_download()
    try:
        assert resp.status == 200 and len(resp.read(65536)) == 65536
    finally:
        conn.close()


def test_lock_timeout_is_503_not_a_queue(rich_db, start_service, pg_cluster):
    """A migration holding an exclusive lock makes the dump fail fast instead of waiting behind it."""
    service = start_service(DATABASE_URL=rich_db, BACKUP_LOCK_TIMEOUT="1")
    with pg_cluster.connect("rich") as db:
        db.execute("BEGIN")
        db.execute("LOCK TABLE app.cache IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        reply = service.request("GET", "/api/v1/backup", service.auth())
        elapsed = time.monotonic() - started
        db.execute("ROLLBACK")
    assert reply.status == 503
    assert reply.headers["Retry-After"].isdigit()
    assert "conflicting lock" in reply.json()["message"]
    assert elapsed < 15


# -- after the first byte: a broken transfer, never a complete-looking file ------------------
def test_backend_terminated_mid_stream_breaks_transfer(big_db, start_service, pg_cluster, tmp_path):
    service = start_service(DATABASE_URL=big_db)
    out = tmp_path / "broken.sql.gz"
    assert curl_with_dump_killed(service, pg_cluster, out, "/api/v1/backup") != 0, "curl must see a broken transfer"
    assert subprocess.run(["gzip", "-t", str(out)], capture_output=True).returncode != 0
    assert wait_until(lambda: '"outcome": "failed"' in service.log(), 5)
    assert "broken mid-stream" in service.log()


def test_client_disconnect_stops_pg_dump_and_session(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn, _, _ = _start_download(service)
    assert pg_dump_pids(pg_cluster) and dump_sessions(pg_cluster)

    conn.close()
    gone_at = time.monotonic()
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0), (
        "pg_dump or its database session outlived the client by more than 2 s"
    )
    assert time.monotonic() - gone_at <= 2.0
    assert wait_until(lambda: '"outcome": "aborted"' in service.log(), 5)


def test_head_starts_no_dump(rich_db, start_service, pg_cluster):
    """With a table locked, a real dump would sit visibly in pg_stat_activity; HEAD must not start one."""
    service = start_service(DATABASE_URL=rich_db)
    with pg_cluster.connect("rich") as db:
        db.execute("BEGIN")
        db.execute("LOCK TABLE app.cache IN ACCESS EXCLUSIVE MODE")
        reply = service.request("HEAD", "/api/v1/backup", service.auth())
        time.sleep(0.5)
        sessions, dumps = dump_sessions(pg_cluster), pg_dump_pids(pg_cluster)
        db.execute("ROLLBACK")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/gzip"
    assert "attachment; filename=" in reply.headers["Content-Disposition"]
    assert reply.body == b""
    assert sessions == [] and dumps == []
    assert '"event": "backup"' not in service.log()
    # The same headers as a GET, but for what only a running backup has: its id and chunked framing.
    # No `Content-Length: 0` either: the backup is not empty, its length is unknown.
    get = service.request("GET", "/api/v1/backup", service.auth())
    assert "Content-Length" not in reply.headers and "X-Backup-Id" not in reply.headers
    assert get.headers["Transfer-Encoding"] == "chunked" and get.headers["X-Backup-Id"]
    same = ("Content-Type", "Cache-Control", "X-Accel-Buffering", "Content-Security-Policy")
    assert [reply.headers[name] for name in same] == [get.headers[name] for name in same]
    assert (
        reply.headers["Content-Disposition"].split("_backup_")[0]
        == get.headers["Content-Disposition"].split("_backup_")[0]
    )


def test_password_in_no_argv_log_or_body(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn, _, _ = _start_download(service)
    try:
        assert pg_dump_pids(pg_cluster), "a dump must be running while argv is inspected"
        for pid in all_pids():
            assert pg_cluster.password not in cmdline(pid), f"password in argv of {pid}: {cmdline(pid)[:80]}"
        pg_dump_args = cmdline(pg_dump_pids(pg_cluster)[0])
        assert "--no-owner" in pg_dump_args and "--clean" in pg_dump_args and "--if-exists" in pg_dump_args
        app_names = [row[1] for row in dump_sessions(pg_cluster)]
        assert app_names and all(n.startswith("backup_svc") for n in app_names)
    finally:
        conn.close()
    info = service.request("GET", "/api/v1/database", service.auth())
    assert pg_cluster.password not in info.body.decode()
    assert wait_until(lambda: '"outcome"' in service.log(), 5)
    assert pg_cluster.password not in service.log()
    assert service.token not in service.log()


def test_pg_dump_gets_password_and_read_only_session_through_environment(big_db, start_service, pg_cluster):
    """Read the running pg_dump's real environment (/proc/PID/environ) and its session."""
    service = start_service(DATABASE_URL=big_db)
    conn, _, _ = _start_download(service)
    try:
        pid = pg_dump_pids(pg_cluster)[0]
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)
        backend_pid = dump_sessions(pg_cluster)[0][0]
        with pg_cluster.connect() as db:
            xid = db.execute("SELECT backend_xid FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone()
    finally:
        conn.close()
    assert environ["PGPASSWORD"] == pg_cluster.password
    assert "default_transaction_read_only=on" in environ["PGOPTIONS"]
    assert environ["PGAPPNAME"].startswith("backup_svc")
    assert xid == (None,)  # the session holds no transaction id: it has written nothing


def test_sigterm_mid_dump_breaks_transfer(big_db, start_service, pg_cluster):
    """A redeploy (SIGTERM) cannot leave a file that looks complete: past the grace period the stream is cut."""
    service = start_service(DATABASE_URL=big_db, GRACEFUL_TIMEOUT="2")
    conn, resp, first = _start_download(service)
    os.kill(service.proc.pid, signal.SIGTERM)
    time.sleep(3.5)  # the client reads nothing during the grace period, so the dump cannot finish
    rest, complete = read_all(resp)
    conn.close()
    assert not complete
    assert not gzip_is_valid(first + rest)
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)
    assert service.proc.wait(timeout=10) is not None
