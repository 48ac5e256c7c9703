"""Test helpers: a real service process, an HTTP client that can stop mid-stream, database snapshots."""
from __future__ import annotations

import gzip
import http.client
import json
import threading
import os
import secrets
import signal
import subprocess
import sys
import time
import zlib
from base64 import b64encode
from pathlib import Path

from backup_svc.pg.localcluster import LocalCluster, free_port

REPO = Path(__file__).resolve().parent.parent
# SQL files the fixtures load (tests/data).
DATA = REPO / "tests" / "data"
# LINK_SECRET and LINK_MAX_TTL of the `link_service` fixture.
LINK_SECRET = "link-secret-" + "x" * 20
LINK_MAX_TTL = 300


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m backup_svc ARGS` as a user would run it."""
    return subprocess.run([sys.executable, "-m", "backup_svc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def basic(user: str, password: str) -> dict[str, str]:
    """An `Authorization: Basic` header."""
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    """An `Authorization: Bearer` header."""
    return {"Authorization": f"Bearer {token}"}


class Service:
    """`python -m backup_svc serve` on a loopback port, as a real gunicorn master + worker."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.token = "tok-" + secrets.token_urlsafe(16)
        self.password = "pw-" + secrets.token_urlsafe(16)
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("ADMIN_", "BACKUP_", "LINK_", "AUTH_", "TRUSTED_PROXY_", "PUBLIC_URL"))},
            "PORT": str(self.port), "ADMIN_TOKEN": self.token, "ADMIN_PASSWORD": self.password,
            "ADMIN_USERNAME": "admin", "PYTHONUNBUFFERED": "1",
            # Tests that send wrong credentials on purpose must not trip the throttle (tests of it lower this).
            "AUTH_FAILURES_PER_MINUTE": "100000", **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20, retries_left: int = 2) -> "Service":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "backup_svc", "serve"], env=self.env, cwd=self.log_path.parent,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "the port is in use" in self.log() and retries_left > 0:
                    # Another process took the free port between our choice and the bind: choose again.
                    self._log.close()
                    self.port = free_port()
                    self.env["PORT"] = str(self.port)
                    self.log_path.write_bytes(b"")
                    return self.start(timeout_s, retries_left=retries_left - 1)
                raise RuntimeError(f"service exited: {self.log()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"service did not answer /healthz: {self.log()}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> "Reply":
        """Send a request and read the whole body (tolerating a broken transfer)."""
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            body, complete = read_all(resp)
            return Reply(resp.status, resp.headers, body, complete)
        finally:
            conn.close()

    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        return [p for p in all_pids() if _ppid(p) == self.proc.pid]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


class Reply:
    """Status, headers and body of one response; `complete` is False when the transfer broke."""

    def __init__(self, status: int, headers, body: bytes, complete: bool):
        self.status, self.headers, self.body, self.complete = status, headers, body, complete

    def json(self):
        import json

        return json.loads(self.body)


def read_all(resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """The body and whether it arrived whole (chunked terminator seen)."""
    parts = []
    try:
        while True:
            chunk = resp.read(65536)
            if not chunk:
                return b"".join(parts), True
            parts.append(chunk)
    except (http.client.IncompleteRead, ConnectionError, OSError) as exc:
        if isinstance(exc, http.client.IncompleteRead):
            parts.append(exc.partial)
        return b"".join(parts), False


def gzip_is_valid(data: bytes) -> bool:
    """True when `data` is one complete gzip stream (what `gzip -t` accepts)."""
    try:
        gzip.decompress(data)
        return True
    except (OSError, EOFError, zlib.error):
        return False


# -- processes -----------------------------------------------------------------------------------
def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pg_dump_pids(cluster: LocalCluster) -> list[int]:
    """pg_dump processes talking to this test cluster (other tests' clusters use other ports)."""
    marker = f":{cluster.port}/"
    return [p for p in all_pids() if "pg_dump" in cmdline(p).split(" ")[0] and marker in cmdline(p)]


def dump_sessions(cluster: LocalCluster) -> list[tuple]:
    """Sessions of the service's dumps (application_name `backup_svc-dump…`) on the cluster."""
    with cluster.connect() as db:
        return db.execute("SELECT pid, application_name, state FROM pg_stat_activity "
                          "WHERE application_name LIKE 'backup_svc-dump%'").fetchall()


def wait_until(predicate, timeout_s: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passed; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- restore and compare -------------------------------------------------------------------------
def restore(cluster: LocalCluster, backup: Path, dbname: str) -> None:
    """`gunzip -c FILE | psql -v ON_ERROR_STOP=1 TARGET` into a new empty database, as the README says."""
    cluster.create_database(dbname)
    gunzip = subprocess.Popen(["gunzip", "-c", str(backup)], stdout=subprocess.PIPE)
    result = subprocess.run(
        [os.path.join(cluster.bin_dir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         cluster.url(dbname, with_password=False)],
        stdin=gunzip.stdout, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": cluster.password},
    )
    gunzip.stdout.close()
    assert gunzip.wait() == 0, "gunzip failed"
    assert result.returncode == 0, f"restore failed: {result.stderr[-3000:]}"


_VOLATILE = ("\\restrict ", "\\unrestrict ", "-- Dumped ", "-- Started on", "-- Completed on")


def snapshot(cluster: LocalCluster, dbname: str) -> dict:
    """Schema, every table's rows, sequences and large objects of a database, in comparable form."""
    schema = subprocess.run(
        [os.path.join(cluster.bin_dir, "pg_dump"), "--schema-only", "--no-owner", "--no-acl",
         cluster.url(dbname, with_password=False)],
        capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": cluster.password},
    ).stdout
    schema = "\n".join(line for line in schema.splitlines() if not line.startswith(_VOLATILE))
    with cluster.connect(dbname) as db:
        tables = db.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1").fetchall()
        rows = {}
        for (table,) in tables:
            rows[table] = db.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
        sequences = db.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2").fetchall()
        large_objects = db.execute(
            "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid").fetchall()
    return {"schema": schema, "rows": rows, "sequences": sequences, "large_objects": large_objects}


def wait_idle(service: Service, timeout_s: float = 10) -> None:
    """Wait until the service runs no dump.

    A download's slot is freed when the server closes the response body, a moment after the client
    has read the last byte; a test that starts the next download at once could get a 429.
    """
    def idle():
        reply = service.request("GET", "/api/v1/database", service.auth())
        return reply.status == 200 and reply.json()["dumps_in_progress"] == 0

    assert wait_until(idle, timeout_s), "a dump is still running"


def audit_records(service, backup_id: str, timeout_s: float = 10) -> list[dict]:
    """The service's audit records (JSON after `backup_svc.audit: `) of one backup's outcome.

    Waits up to `timeout_s` (and no longer): the record is written when the response is closed,
    just after the last byte.
    """
    def records() -> list[dict]:
        found = []
        for line in service.log().splitlines():
            if "backup_svc.audit: " in line:
                record = json.loads(line.split("backup_svc.audit: ", 1)[1])
                if record["id"] == backup_id and record["event"] == "backup":  # not `backup_started`
                    found.append(record)
        return found

    return wait_until(records, timeout_s=timeout_s)


# -- a network link that can stall -----------------------------------------------------------------
class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port` whose link can be frozen and thawed.

    Frozen, it stops forwarding in both directions without closing anything (no FIN, no RST): bytes
    pile up in the kernel's buffers as on a link that went silent (a dead NAT entry, a partition).
    New connections are accepted but not forwarded either. Every thread polls at most every 0.1 s
    and `close()` ends them all, so the proxy never outlives its test.
    With `rate`, what clients send is passed on at that many bytes per second (a slow link to a
    bucket); the proxy's receive buffers are kept small so that the sender feels the rate.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, rate: int | None = None):
        import socket
        import threading

        self.target = (target_host, target_port)
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        if rate:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self._pass_left: int | None = None  # see freeze_after
        self._closed = threading.Event()
        self._sockets: list = []
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="proxy-accept")]
        self._threads[0].start()

    @property
    def endpoint(self) -> str:
        """The proxy as an HTTP endpoint (for an S3 server behind it)."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, cluster, dbname: str, *, with_password: bool = True) -> str:
        """`cluster.url(dbname)` through this proxy."""
        return cluster.url(dbname, with_password=with_password).replace(f":{cluster.port}/", f":{self.port}/")

    def freeze(self) -> None:
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self._pass_left = None

    def freeze_after(self, connections: int) -> None:
        """Let the next `connections` new connections through; freeze every later one from its start."""
        self._pass_left = connections

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            stuck = threading.Event()
            if self._pass_left is not None:
                if self._pass_left > 0:
                    self._pass_left -= 1
                else:
                    stuck.set()
            if self.rate:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            for source, sink, rate in ((client, upstream, self.rate), (upstream, client, None)):
                thread = threading.Thread(target=self._pump, args=(source, sink, stuck, rate), daemon=True,
                                          name="proxy-pump")
                self._threads.append(thread)
                thread.start()

    def _pump(self, source, sink, stuck, rate: int | None = None) -> None:
        import select
        import time

        while not self._closed.is_set():
            if self.frozen.is_set() or stuck.is_set():
                self._closed.wait(0.1)
                continue
            try:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                data = source.recv(4096 if rate else 65536)
                if not data:
                    break
                while self.frozen.is_set() and not self._closed.is_set():  # read just as the link froze
                    self._closed.wait(0.1)
                sink.sendall(data)  # a close() shuts the socket down, which ends a blocked send
                if rate:
                    time.sleep(len(data) / rate)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        for sock in self._sockets:
            try:
                sock.shutdown(2)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in [self.listener, *self._sockets]:
            sock.close()


# -- faults: locks, stalled reads, audit lines ------------------------------------------------------
def environ_of(pid: int) -> dict[str, str]:
    """The environment a running process was started with (/proc/<pid>/environ)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def started_lines(service, backup_id: str) -> list[dict]:
    """The `backup_started` audit lines of one backup."""
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



def read_within(resp, conn, seconds: float) -> tuple[bytes, bool]:
    """`read_all(resp)`, failing the test (and closing the connection) if it takes over `seconds`."""
    result: list = []
    reader = threading.Thread(target=lambda: result.append(read_all(resp)), daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        conn.sock.shutdown(2)
        reader.join(5)
        raise AssertionError(f"the response was still streaming {seconds} s later")
    return result[0]


def timed(call):
    """`call()` and the seconds it took."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def outcome_line(service, backup_id: str, timeout_s: float = 10) -> dict | None:
    """The audit line of one backup's outcome, once written (None if not within `timeout_s`)."""
    records = audit_records(service, backup_id, timeout_s)  # one wait: `timeout_s` is the whole bound
    return records[-1] if records else None


def waiting_dump_sessions(cluster) -> list[tuple]:
    """Sessions of the service's dumps that wait for a lock."""
    with cluster.connect() as db:
        return db.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%' "
                          "AND wait_event_type = 'Lock'").fetchall()


def remote_files(folder) -> list[str]:
    """The names in an rclone remote's folder, sorted, without the history's `_history/` folder."""
    return sorted(n for n in os.listdir(folder) if n != "_history")


UPLOAD_KILLS = ["terminate backend", "SIGKILL pg_dump", "SIGTERM upload", "Ctrl-C upload"]


def kill_upload(kill: str, upload: subprocess.Popen, cluster: LocalCluster, dbname: str) -> None:
    """Stop a running `upload` one of the UPLOAD_KILLS ways: its pg_dump session terminated by the server,
    pg_dump killed outright, or the upload process sent SIGTERM (a redeploy) or SIGINT (Ctrl-C)."""
    if kill == "terminate backend":
        with cluster.connect(dbname) as db:
            terminated = db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'backup_svc-upload%' AND backend_type = "
                                    "'client backend' AND application_name <> 'backup_svc-upload-lock'").fetchall()
        assert terminated, "no pg_dump session to terminate"
    elif kill == "SIGKILL pg_dump":
        for pid in pg_dump_pids(cluster):
            os.kill(pid, signal.SIGKILL)
    else:
        upload.send_signal(signal.SIGTERM if kill == "SIGTERM upload" else signal.SIGINT)
