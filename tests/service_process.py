"""The service as a real process: `serve` (gunicorn master + worker) on a loopback port, and what its log
says of one backup (the audit lines of its start and outcome)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from backup_svc.pg.localcluster import free_port
from tests.http_client import Reply, bearer, read_all
from tests.processes import all_pids, parent_pid, wait_until

# LINK_SECRET and LINK_MAX_TTL of the `link_service` fixture.
LINK_SECRET = "link-secret-" + "x" * 20
LINK_MAX_TTL = 300


class Service:
    """`python -m backup_svc serve` on a loopback port, as a real gunicorn master + worker."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.token = "tok-" + secrets.token_urlsafe(16)
        self.password = "pw-" + secrets.token_urlsafe(16)
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("ADMIN_", "BACKUP_", "LINK_", "AUTH_", "TRUSTED_PROXY_", "PUBLIC_URL"))
            },
            "PORT": str(self.port),
            "ADMIN_TOKEN": self.token,
            "ADMIN_PASSWORD": self.password,
            "ADMIN_USERNAME": "admin",
            "PYTHONUNBUFFERED": "1",
            # Tests that send wrong credentials on purpose must not trip the throttle (tests of it lower this).
            "AUTH_FAILURES_PER_MINUTE": "100000",
            **env,
        }
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20, retries_left: int = 2) -> "Service":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", "serve"],
            env=self.env,
            cwd=self.log_path.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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

    def start_download(self, timeout: float = 30) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET /api/v1/backup as the admin, its headers read and its body not: (connection, response)."""
        conn = self.connection(timeout=timeout)
        conn.request("GET", "/api/v1/backup", headers=self.auth())
        return conn, conn.getresponse()

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

    def check(self) -> subprocess.CompletedProcess:
        """`python -m backup_svc check` with this service's environment, as its operator would run it."""
        return subprocess.run(
            [sys.executable, "-m", "backup_svc", "check"],
            cwd=self.log_path.parent,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def worker_pids(self) -> list[int]:
        return [p for p in all_pids() if parent_pid(p) == self.proc.pid]

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


def started_lines(service, backup_id: str) -> list[dict]:
    """The `backup_started` audit lines of one backup."""
    marker = "backup_svc.audit: "
    lines = [json.loads(line.split(marker, 1)[1]) for line in service.log().splitlines() if marker in line]
    return [line for line in lines if line["event"] == "backup_started" and line["id"] == backup_id]


def outcome_line(service, backup_id: str, timeout_s: float = 10) -> dict | None:
    """The audit line of one backup's outcome, once written (None if not within `timeout_s`)."""
    records = audit_records(service, backup_id, timeout_s)  # one wait: `timeout_s` is the whole bound
    return records[-1] if records else None


def curl_with_dump_killed(service, pg_cluster, out, path: str) -> int:
    """curl (at 2 MB/s, the token) downloads `path` into `out`; once bytes have arrived the dump's backend is
    terminated (exactly one); curl's exit status."""
    from tests.processes import wait_until

    curl = subprocess.Popen(
        [
            "curl",
            "--fail",
            "--silent",
            "--show-error",
            "--limit-rate",
            "2M",
            "-o",
            str(out),
            "-H",
            f"Authorization: Bearer {service.token}",
            f"{service.base_url}{path}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: out.exists() and out.stat().st_size > 0, 20)
    with pg_cluster.connect() as db:
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%'"
        ).fetchall()
    assert killed == [(True,)]
    return curl.wait(timeout=60)
