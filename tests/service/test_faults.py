"""Faults that must never wedge the service or leak anything (issue 11), caused for real: a real
PostgreSQL, a real gunicorn, real pg_dump and psql processes, signals and locks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support import (
    REPO,
    FreezableProxy,
    audit_records,
    cmdline,
    dump_sessions,
    gzip_is_valid,
    pg_dump_pids,
    read_all,
    run_cli,
    wait_until,
)

SERVICE_SECRETS = {
    "LINK_SECRET": "link-secret-must-not-leak-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-must-not-leak-0123456789",
    "SMTP_URL": "smtp://user:smtp-secret-must-not-leak@127.0.0.1:2525",
}


def environ_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def started_lines(service, backup_id: str) -> list[dict]:
    marker = "backup_svc.audit: "
    lines = [json.loads(line.split(marker, 1)[1]) for line in service.log().splitlines() if marker in line]
    return [line for line in lines if line["event"] == "backup_started" and line["id"] == backup_id]


class LockedTable:
    """An ACCESS EXCLUSIVE lock on a table, held by an open transaction (a migration, as pg_dump sees it)."""

    def __init__(self, cluster, dbname: str, table: str):
        self.db = cluster.connect(dbname)
        self.db.execute("BEGIN")
        self.db.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if not self.db.closed:
            self.db.execute("ROLLBACK")
            self.db.close()


@pytest.fixture
def locked_cache(pg_cluster, rich_db):
    lock = LockedTable(pg_cluster, "rich", "app.cache")
    yield lock
    lock.release()


@pytest.fixture
def proxy(pg_cluster):
    link = FreezableProxy(pg_cluster.port)
    yield link
    link.close()


def read_within(resp, conn, seconds: float) -> tuple[bytes, bool]:
    """`read_all(resp)`, failing the test (and closing the connection) if it takes over `seconds`."""
    result: list = []
    reader = threading.Thread(target=lambda: result.append(read_all(resp)), daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        conn.sock.shutdown(2)
        reader.join(5)
        pytest.fail(f"the response was still streaming {seconds} s later")
    return result[0]


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def outcome_line(service, backup_id: str, timeout_s: float = 10) -> dict | None:
    records = wait_until(lambda: audit_records(service, backup_id), timeout_s)
    return records[-1] if records else None


def waiting_dump_sessions(cluster) -> list[tuple]:
    with cluster.connect() as db:
        return db.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%' "
                          "AND wait_event_type = 'Lock'").fetchall()


# -- what pg_dump is given ---------------------------------------------------------------------
def test_pg_dump_sees_no_service_secret(big_db, start_service, pg_cluster):
    """/proc/<pid>/environ of the running pg_dump: PATH and the password, never ADMIN_*, LINK_SECRET, AWS_*..."""
    # (SMTP_URL is refused at start-up without a recipient and a sender)
    service = start_service(DATABASE_URL=big_db, NOTIFY_EMAIL_TO="ops@example.com",
                            NOTIFY_EMAIL_FROM="backups@example.com", **SERVICE_SECRETS)
    conn = service.connection()
    conn.request("GET", "/api/v1/backup", headers=service.auth())
    resp = conn.getresponse()
    try:
        assert resp.status == 200
        resp.read(65536)
        pid = pg_dump_pids(pg_cluster)[0]
        environ, argv = environ_of(pid), cmdline(pid)
    finally:
        conn.close()
    assert environ["PGPASSWORD"] == pg_cluster.password
    assert environ["PATH"] == os.environ["PATH"]
    for name in ("ADMIN_TOKEN", "ADMIN_PASSWORD", "ADMIN_USERNAME", *SERVICE_SECRETS, "DATABASE_URL", "PORT"):
        assert name not in environ, f"pg_dump inherited {name}"
    leaked = [v for v in (service.token, service.password, *SERVICE_SECRETS.values()) if v in "\0".join(environ.values())]
    assert leaked == []
    # a dead link is noticed in about a minute, not after the kernel's two hours
    for param in ("keepalives=1", "keepalives_idle=30", "keepalives_interval=10", "keepalives_count=3",
                  "tcp_user_timeout=60000"):
        assert param in argv, argv
    assert "client_connection_check_interval=1000" in environ["PGOPTIONS"]


def test_password_from_pgpassword_works_for_readiness_check_and_backup(big_db, start_service, pg_cluster):
    """libpq's convention: DATABASE_URL without a password, PGPASSWORD beside it. All three agree."""
    url = pg_cluster.url("big", with_password=False)
    env = {"DATABASE_URL": url, "PGPASSWORD": pg_cluster.password}
    service = start_service(**env)

    assert service.request("GET", "/readyz").status == 200
    check = run_cli("check", env={**env, "ADMIN_TOKEN": "t" * 20})
    assert check.returncode == 0, check.stdout + check.stderr
    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 200, reply.body[:300]
    assert reply.complete and gzip_is_valid(reply.body)


# -- nothing outlives its parent ---------------------------------------------------------------
def test_worker_killed_during_lock_wait_leaves_no_pg_dump_and_no_session(rich_db, start_service, pg_cluster,
                                                                         locked_cache):
    service = start_service(DATABASE_URL=rich_db)
    backup_id = "killed-worker-0001"
    conn = service.connection(timeout=60)
    conn.request("GET", f"/api/v1/backup?progress_id={backup_id}", headers=service.auth())
    try:
        assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10), "pg_dump never waited for the lock"
        assert pg_dump_pids(pg_cluster)
        [worker] = service.worker_pids()
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0), \
            "pg_dump or its session outlived the killed worker by 2 s"
        print(f"cleanup after SIGKILL of the worker: {time.monotonic() - killed:.2f} s")
    finally:
        conn.close()
    [line] = started_lines(service, backup_id)
    assert line["actor"] == "token"


def test_psql_dies_with_a_killed_restore(rich_db, pg_cluster, tmp_path):
    """`restore` SIGKILLed while psql waits for a lock: psql goes too, and nothing was committed."""
    made = run_cli("dump", "-o", "rich.sql.gz", env={"DATABASE_URL": rich_db}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    target = pg_cluster.create_database("restore_killed", "CREATE SCHEMA app; CREATE TABLE app.cache (k text);")
    lock = LockedTable(pg_cluster, "restore_killed", "app.cache")
    try:
        restore = subprocess.Popen([sys.executable, "-m", "backup_svc", "restore", str(tmp_path / "rich.sql.gz"),
                                    "--target-url", target, "--force"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def psql_waiting():
            with pg_cluster.connect() as db:
                return db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'backup_svc-restore' "
                                  "AND wait_event_type = 'Lock'").fetchall()

        assert wait_until(psql_waiting, 30), restore.stdout.read1().decode() if restore.poll() is not None else ""
        psqls = [p for p in os.listdir("/proc") if p.isdigit() and _is_psql_child(int(p), restore.pid)]
        assert psqls
        restore.kill()
        restore.wait()
        killed = time.monotonic()
        assert wait_until(lambda: not any(os.path.exists(f"/proc/{p}") and _state(int(p)) != "Z" for p in psqls), 2.0)
        assert wait_until(lambda: not psql_waiting(), 3.0)
        print(f"psql gone {time.monotonic() - killed:.2f} s after its parent")
    finally:
        lock.release()
    with pg_cluster.connect("restore_killed") as db:
        assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'app'").fetchone() == (1,)


def _is_psql_child(pid: int, parent: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0]
    except OSError:
        return False
    return int(fields[1]) == parent and argv0.endswith(b"psql")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


# -- a client that leaves before the first byte ------------------------------------------------
def test_client_leaving_during_a_lock_wait_stops_pg_dump_and_frees_the_slot(rich_db, start_service, pg_cluster,
                                                                           locked_cache):
    """`curl -m 3` against a table a migration holds: nothing has been written to the client yet."""
    service = start_service(DATABASE_URL=rich_db)
    conn = service.connection()
    conn.request("GET", "/api/v1/backup?progress_id=left-early-0001", headers=service.auth())
    assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10)
    conn.close()
    left = time.monotonic()
    assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0), \
        "pg_dump or its session outlived the client by 2 s"
    cleanup = time.monotonic() - left
    info = service.request("GET", "/api/v1/database", service.auth()).json()
    assert info["dumps_in_progress"] == 0
    line = outcome_line(service, "left-early-0001")
    assert line["outcome"] == "aborted" and "before the first byte" in line["error"]
    print(f"client gone during lock wait: pg_dump and session gone in {cleanup:.2f} s")


def test_client_leaving_while_the_database_link_is_frozen(rich_db, start_service, pg_cluster, proxy):
    """The link stalls before pg_dump even starts (the facts query hangs): the slot still comes back."""
    service = start_service(DATABASE_URL=proxy.url(pg_cluster, "rich"))
    assert service.request("HEAD", "/api/v1/backup", service.auth()).status == 200
    proxy.freeze()
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
    proxy.thaw()
    resp = conn.getresponse()
    assert resp.status == 200
    conn.close()


# -- the database link stalls after the first byte ---------------------------------------------
def test_stalled_link_breaks_the_transfer_and_frees_everything(big_db, start_service, pg_cluster, proxy):
    service = start_service(DATABASE_URL=proxy.url(pg_cluster, "big"), BACKUP_STALL_TIMEOUT="8")
    conn = service.connection(timeout=60)
    conn.request("GET", "/api/v1/backup", headers=service.auth())
    resp = conn.getresponse()
    assert resp.status == 200
    backup_id = resp.headers["X-Backup-Id"]
    first = resp.read(65536)
    proxy.freeze()
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
    print(f"stalled link: transfer broken {broken_after:.1f} s after the freeze (BACKUP_STALL_TIMEOUT=8)")


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


def test_a_query_on_a_frozen_link_is_cut_at_its_deadline(rich_db, pg_cluster, proxy):
    """The service's own queries (facts, progress) on a link that froze after connecting."""
    from backup_svc.config import parse_database_url
    from backup_svc.pg.diagnose import NOT_ANSWERING
    from backup_svc.pg.facts import Deadline, connect

    conn = parse_database_url(proxy.url(pg_cluster, "rich"))
    with connect(conn, timeout_s=5, purpose="test") as db:
        assert db.execute("SELECT 1").fetchone() == (1,)
        proxy.freeze()
        started = time.monotonic()
        with Deadline(db, 1.5) as deadline, pytest.raises(Exception) as exc:
            db.execute("SELECT 2").fetchone()
        elapsed = time.monotonic() - started
    assert deadline.fired and 1.4 < elapsed < 3
    assert deadline.check(exc.value, None).kind == NOT_ANSWERING


# -- cancel ------------------------------------------------------------------------------------
def _delete(service, backup_id: str, headers: dict[str, str] | None = None):
    return service.request("DELETE", f"/api/v1/backups/{backup_id}", {**service.auth(), **(headers or {})})


def test_cancel_breaks_a_running_transfer_and_says_who(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn = service.connection(timeout=60)
    conn.request("GET", "/api/v1/backup", headers=service.auth())
    resp = conn.getresponse()
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
    conn = service.connection(timeout=60)
    conn.request("GET", "/api/v1/backup", headers=service.auth())
    resp = conn.getresponse()
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
        for headers in ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
                        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
                        {"Origin": "https://evil.example"},
                        {"Origin": f"http://localhost:{service.port}"}):
            assert _delete(service, "cancel-guarded-1", headers).status == 403, headers
        anonymous = service.request("DELETE", "/api/v1/backups/cancel-guarded-1")
        assert anonymous.status == 401
        assert _delete(service, "no-such-backup-1").status == 404
        assert waiting_dump_sessions(pg_cluster), "a refused cancel must not stop the dump"
        same_origin = {"Sec-Fetch-Site": "same-origin", "Origin": service.base_url}
        assert _delete(service, "cancel-guarded-1", same_origin).status == 200
    finally:
        conn.close()


def test_the_service_s_own_connections_use_tcp_keepalives(rich_db):
    """Read the options off the kernel's socket: a dead link is noticed in about a minute."""
    import socket

    from backup_svc.config import parse_database_url
    from backup_svc.pg.facts import connect

    with connect(parse_database_url(rich_db), timeout_s=5, purpose="test") as db:
        with socket.socket(fileno=os.dup(db.fileno())) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60000
