"""The container image: built from the Dockerfile with podman, started from environment variables alone,
healthy, and serving a backup of a database on the host that restores identically.

Built with Debian's own postgresql-client (PG_CLIENT_SOURCE=debian): the PGDG repository that the
default build uses is not reachable from here. The host's test cluster has the same major.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time

import pytest

from tests import REPO
from tests.databases import restore, snapshot
from tests.http_client import gzip_is_valid, read_all
from tests.image import podman as pm
from tests.processes import pg_dump_pids, wait_until
from tests.service_process import Service

IMAGE = "localhost/backup_svc:test"
RELEASE = "bookworm"  # the Dockerfile's DEBIAN_RELEASE default
PASSED_ENV = ("DATABASE_URL", "ADMIN_TOKEN", "ADMIN_USERNAME", "ADMIN_PASSWORD", "PORT", "GRACEFUL_TIMEOUT")


def _say(request, line: str) -> None:
    """Show a timing on the terminal even when the test passes (captured output is not shown then)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n[image] {line}")


@pytest.fixture(scope="module")
def image(request) -> str:
    """The image built from the working tree (base image made first when podman has none)."""
    pm.require_tools()
    started = time.monotonic()
    made_base = pm.ensure_base_image(RELEASE)
    base_s = time.monotonic() - started
    pm.build_image(REPO, IMAGE, {"PG_CLIENT_SOURCE": "debian", "DEBIAN_RELEASE": RELEASE})
    _say(
        request,
        f"base image {'made by debootstrap' if made_base else 'reused'} in {base_s:.1f} s, "
        f"build {time.monotonic() - started - base_s:.1f} s",
    )
    return IMAGE


class ContainerService(Service):
    """The image run with `--network host`: same HTTP helpers as Service, but podman instead of python.

    Settings reach the container as `-e NAME` (value from podman's environment), so the database
    password is in no argv.
    """

    def __init__(self, image: str, env: dict[str, str], log_path):
        super().__init__(env, log_path)
        self.image = image
        self.name = f"backup_svc-test-{secrets.token_hex(4)}"

    def start(self, timeout_s: float = 60) -> "ContainerService":
        """`podman run` the image with this service's settings; return once /healthz answers."""
        passed = [arg for name in PASSED_ENV if name in self.env for arg in ("-e", name)]
        pm.podman(
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            *passed,
            self.image,
            env={name: self.env[name] for name in PASSED_ENV if name in self.env},
        )

        def answers() -> bool:
            if not self.running():
                raise RuntimeError(f"container exited: {self.log()}")
            try:
                return self.request("GET", "/healthz").status == 200
            except OSError:
                return False

        if not wait_until(answers, timeout_s, interval=0.2):
            raise RuntimeError(f"container did not answer /healthz: {self.log()}")
        return self

    def running(self) -> bool:
        """Whether the container is still up."""
        state = pm.podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout
        return state.strip() == "true"

    def log(self) -> str:
        """The end of the container's output (gunicorn's and the service's log)."""
        result = pm.podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def stop(self) -> int | None:
        """SIGTERM, as a host does on redeploy; return the exit code, then remove the container."""
        try:
            pm.podman("stop", "--time", "20", self.name, check=False)
            code = pm.podman("inspect", "--format", "{{.State.ExitCode}}", self.name, check=False).stdout
            return int(code) if code.strip().isdigit() else None
        finally:
            pm.podman("rm", "--force", self.name, check=False)


@pytest.fixture
def container(image, rich_db, tmp_path):
    """The image serving the rich test database from the host."""
    service = ContainerService(image, {"DATABASE_URL": rich_db}, tmp_path / "container.log")
    yield service.start()
    service.stop()


def test_image_runs_unprivileged_with_healthcheck_and_serve_command(image):
    inspected = json.loads(pm.podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]

    assert config["Cmd"] == ["python", "-m", "backup_svc", "serve"]
    assert config["User"] == "backup_svc"
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    assert "8080/tcp" in config["ExposedPorts"]
    assert next(v for v in config["Env"] if v.startswith("PATH=")).startswith("PATH=/opt/venv/bin:")


def test_image_holds_clients_but_no_compiler_apt_lists_or_build_secret(image):
    """The clients the service runs: pg_dump (backups), psql (restores and drills), rclone (rclone remotes)."""
    script = (
        "id -u; command -v python; ls /usr/lib/postgresql/*/bin/pg_dump; ls /usr/lib/postgresql/*/bin/psql || echo no-psql; "
        "command -v rclone || echo no-rclone; "
        "ls /var/lib/apt/lists | grep -v '^lock$' | grep -v '^partial$' | wc -l; "
        "ls -A /run/secrets 2>/dev/null | wc -l; "
        "for c in cc gcc g++ make; do command -v $c; done; true"
    )
    lines = pm.podman("run", "--rm", "--network", "none", image, "sh", "-c", script).stdout.split()

    uid, python, pg_dump, psql, rclone, apt_lists, secret_files, *compilers = lines
    assert uid != "0"
    assert python == "/opt/venv/bin/python"
    assert pg_dump.startswith("/usr/lib/postgresql/") and pg_dump.endswith("/bin/pg_dump")
    assert psql == pg_dump.removesuffix("pg_dump") + "psql"  # the same major's
    assert rclone == "/usr/bin/rclone"
    assert apt_lists == "0"
    assert secret_files == "0"
    assert compilers == []


def test_container_backup_restores_identically(container, pg_cluster, tmp_path, request):
    started = time.monotonic()
    assert pm.podman("healthcheck", "run", container.name, check=False).returncode == 0

    info = container.request("GET", "/api/v1/database", container.auth()).json()
    assert info["database"] == "rich"
    assert info["pg_dump"]["path"].startswith("/usr/lib/postgresql/")
    assert container.request("GET", "/api/v1/backup", {}).status == 401

    reply = container.request("GET", "/api/v1/backup", container.auth())
    assert reply.status == 200, reply.body[:500]
    assert reply.complete and gzip_is_valid(reply.body)
    backup = tmp_path / "from_container.sql.gz"
    backup.write_bytes(reply.body)
    restore(pg_cluster, backup, "rich_from_container")
    assert snapshot(pg_cluster, "rich_from_container") == snapshot(pg_cluster, "rich")

    # docs/deploy-railway.md's way past the 15-minute edge limit: the CLI inside the running
    # container (as `railway ssh` runs it), from another folder, the backup on stdout.
    piped = pm.podman(
        "exec",
        "--workdir",
        "/",
        container.name,
        "python",
        "-m",
        "backup_svc",
        "dump",
        "-o",
        "-",
        stdin=subprocess.DEVNULL,
        text=False,
    )
    backup.write_bytes(piped.stdout)
    restore(pg_cluster, backup, "rich_from_container_cli")
    assert snapshot(pg_cluster, "rich_from_container_cli") == snapshot(pg_cluster, "rich")

    # A redeploy's SIGTERM stops gunicorn cleanly (PID 1 handles it; the exit code is 0).
    assert container.stop() == 0
    _say(request, f"smoke test (healthcheck, 2 backups, restores, stop) {time.monotonic() - started:.1f} s")


def test_redeploy_sigterm_lets_a_running_download_finish(image, pg_cluster, tmp_path):
    """What docs/deploy-railway.md promises: within GRACEFUL_TIMEOUT a redeploy does not cut a download."""
    # ~25 MB of gzip: more than the pipe and socket buffers hold, so the dump is still running
    # while the client does not read (smaller than big_db, which takes ~14 s to stream).
    url = pg_cluster.create_database(
        "drain",
        """
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO blobs SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000)
        FROM generate_series(1, 8000) g;
    """,
    )
    service = ContainerService(image, {"DATABASE_URL": url, "GRACEFUL_TIMEOUT": "30"}, tmp_path / "c.log")
    service.start()
    try:
        conn, resp = service.start_download(timeout=60)
        assert resp.status == 200
        first = resp.read(65536)
        # The rest is read only after SIGTERM: the service must keep streaming through the drain.
        stopping = threading.Thread(target=lambda: pm.podman("stop", "--time", "60", service.name))
        stopped_at = time.monotonic()
        stopping.start()
        assert wait_until(lambda: "Handling signal: term" in service.log(), 20, interval=0.1)
        assert pg_dump_pids(pg_cluster), "the dump must still be running when SIGTERM arrives"
        rest, complete = read_all(resp)
        conn.close()
        stopping.join(timeout=90)

        assert complete and gzip_is_valid(first + rest)
        assert len(first + rest) > 20_000_000
        assert not service.running()
        # It exited by itself once the download was done, long before podman's SIGKILL deadline.
        assert time.monotonic() - stopped_at < 45
        assert pm.podman("inspect", "--format", "{{.State.ExitCode}}", service.name).stdout.strip() == "0"
    finally:
        service.stop()
