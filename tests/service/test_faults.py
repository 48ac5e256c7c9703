"""What pg_dump and psql are given, and that they never outlive their parent (issue 11): /proc/<pid>/environ
of a running pg_dump, a SIGKILLed worker and restore, real PostgreSQL sessions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests import REPO
from tests.databases import dump_sessions, LockedTable, waiting_dump_sessions
from tests.http_client import gzip_is_valid
from tests.processes import cmdline, environ_of, pg_dump_pids, run_cli, wait_until
from tests.service_process import started_lines

SERVICE_SECRETS = {
    "LINK_SECRET": "link-secret-must-not-leak-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-must-not-leak-0123456789",
    "SMTP_URL": "smtp://user:smtp-secret-must-not-leak@127.0.0.1:2525",
}


# -- what pg_dump is given ---------------------------------------------------------------------
def test_pg_dump_sees_no_service_secret(big_db, start_service, pg_cluster):
    """/proc/<pid>/environ of the running pg_dump: PATH and the password, never ADMIN_*, LINK_SECRET, AWS_*...;
    /proc/<pid>/cmdline: no secret at all, the database password included."""
    # (SMTP_URL is refused at start-up without a recipient and a sender)
    service = start_service(
        DATABASE_URL=big_db,
        NOTIFY_EMAIL_TO="ops@example.com",
        NOTIFY_EMAIL_FROM="backups@example.com",
        **SERVICE_SECRETS,
    )
    conn, resp = service.start_download()
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
    leaked = [
        v for v in (service.token, service.password, *SERVICE_SECRETS.values()) if v in "\0".join(environ.values())
    ]
    assert leaked == []
    # nor in its arguments (anyone on the machine can read a command line): not even the database password
    shown = [v for v in (service.token, service.password, *SERVICE_SECRETS.values(), pg_cluster.password) if v in argv]
    assert "pg_dump" in argv and shown == []  # (argv is "" if the process had gone)
    # a dead link is noticed in about a minute, not after the kernel's two hours
    for param in (
        "keepalives=1",
        "keepalives_idle=30",
        "keepalives_interval=10",
        "keepalives_count=3",
        "tcp_user_timeout=60000",
    ):
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
def test_worker_killed_during_lock_wait_leaves_no_pg_dump_and_no_session(
    rich_db, start_service, pg_cluster, locked_cache
):
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
        assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0), (
            "pg_dump or its session outlived the killed worker by 2 s"
        )
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
        restore = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backup_svc",
                "restore",
                str(tmp_path / "rich.sql.gz"),
                "--target-url",
                target,
                "--force",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def psql_waiting():
            with pg_cluster.connect() as db:
                return db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'backup_svc-restore' "
                    "AND wait_event_type = 'Lock'"
                ).fetchall()

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


def test_pg_facts_connect_sets_tcp_keepalives_on_its_socket(rich_db):
    """Read the options off the kernel's socket of a connection made by backup_svc.pg.facts.connect (the
    dump's watcher and the upload lock use it): a dead link is noticed in about a minute. The restore's,
    the drill's and the parallel pool's connections pass the same keepalive_params() but are not read here."""
    from backup_svc.pg.conninfo import parse_database_url
    from backup_svc.pg.facts import connect

    with connect(parse_database_url(rich_db), timeout_s=5, purpose="test") as db:
        with socket.socket(fileno=os.dup(db.fileno())) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60000
