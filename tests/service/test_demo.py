"""The newcomer's path: `serve --demo` (what `./dev.sh run` starts), its banner, and the docs' commands.

Everything runs for real: the demo's own throwaway PostgreSQL, gunicorn on a loopback port, curl,
gzip, psql, createdb and the `backup-svc` command, in shells, exactly as printed or written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from backup_svc.pg.localcluster import free_port
from backup_svc.web.docs import markdown_parser
from tests import REPO
from tests.processes import wait_until
from tests.service_process import LINK_SECRET

# The marker a doc puts on the line before a shell block that must run, as written, against the demo.
DEMO_TEST_MARKER = "<!-- demo-test -->"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A file name of the docs' example shape stands for "your backup"; the test saves a real one under it.
EXAMPLE_BACKUP = re.compile(r"\b[a-z]+_backup_\d{8}_\d{6}\.sql\.gz\b")
BIN = Path(sys.executable).parent  # .venv/bin: backup-svc, python (as after `source .venv/bin/activate`)


def newcomer_environ() -> dict[str, str]:
    """This environment without what a newcomer's shell would not have set (the demo makes its own)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ADMIN_", "DATABASE_URL", "BIND_HOST", "LINK_", "PUBLIC_URL"))
    }


class Demo:
    """`python -m backup_svc serve --demo` as `./dev.sh run` starts it, and what its banner said."""

    def __init__(self, cwd: Path, **env: str):
        self.port = free_port()
        self.env = {
            **newcomer_environ(),
            "PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.cwd = cwd
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", "serve", "--demo"],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.banner = self._read_banner()
        assert wait_until(self._healthy, 20), self.banner

    def _read_banner(self) -> str:
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if "Starting gunicorn" in line:
                return "".join(lines)
        raise AssertionError("the demo exited before serving:\n" + "".join(lines))

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return conn.recv(64).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False

    def value(self, pattern: str) -> str:
        match = re.search(pattern, self.banner)
        assert match, f"{pattern!r} not in the banner:\n{self.banner}"
        return match.group(1)

    @property
    def database_url(self) -> str:
        return self.value(r"Database:\s+(\S+)")

    def storage_env(self) -> dict[str, str]:
        """The bucket's and the database's variables the banner exports (as a deployed service's container has them)."""
        env = {}
        for line in re.findall(r"^\s+export (.+)$", self.banner, re.M):
            for pair in shlex.split(line):
                name, _, value = pair.partition("=")
                env[name] = value
        return env

    def shell_lines(self) -> list[str]:
        """The commands the banner prints to paste into a shell (indented under "from a shell")."""
        block = self.banner.split("from a shell", 1)[1].split("\n\n", 1)[0]
        return [line.strip() for line in block.splitlines()[1:] if line.strip()]

    def stop(self) -> str:
        """Ctrl-C, as a person stops it; the rest of its output."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.stdout.read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One demo for the module, with signed links on (for the docs' `sign-url` example)."""
    running = Demo(tmp_path_factory.mktemp("demo"), LINK_SECRET=LINK_SECRET)
    yield running
    running.stop()


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def table_rows(url: str) -> dict[str, int]:
    """Every user table of a database with its row count."""
    with psycopg.connect(url, autocommit=True) as db:
        tables = [
            t
            for (t,) in db.execute(
                "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1"
            ).fetchall()
        ]
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


# -- the banner ---------------------------------------------------------------------------------
def test_demo_listens_on_loopback_only(demo):
    """Every socket the demo listens on is 127.0.0.1 or ::1 (/proc/net/tcp*, no outside address used)."""
    listening = []
    for table, family in (("/proc/net/tcp", "4"), ("/proc/net/tcp6", "6")):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) == demo.port:  # 0A: LISTEN
                listening.append((family, address))
    assert sorted(listening) == [("4", "0100007F"), ("6", "00000000000000000000000001000000")], listening
    assert "this machine only" in demo.banner and f"PORT={demo.port + 1} ./dev.sh run" in demo.banner


def test_banner_commands_download_verify_and_restore_as_printed(demo, tmp_path):
    """A newcomer copies only what the banner prints: curl, verify, TARGET_URL, restore."""
    lines = demo.shell_lines()
    cli = str(BIN / "backup-svc")  # the demo runs in a folder outside the checkout: the full path
    assert len(lines) == 4 and lines[0].startswith("curl -f -o shop_backup.sql.gz -H 'Authorization: Bearer ")
    assert lines[1] == f"{cli} verify shop_backup.sql.gz"
    assert re.fullmatch(r"TARGET_URL='postgresql://postgres:\S+@127\.0\.0\.1:\d+/shop_restored'", lines[2])
    assert lines[3] == f'{cli} restore shop_backup.sql.gz --target-url "$TARGET_URL" --create'
    done = bash("\n".join(lines), tmp_path, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "ok: shop_backup.sql.gz is a complete, intact backup" in done.stdout
    assert "restored shop_backup.sql.gz into 'shop_restored'" in done.stdout
    restored = table_rows(with_database(demo.database_url, "shop_restored"))
    assert restored == table_rows(demo.database_url) and sum(restored.values()) > 0


def test_the_demo_stores_backups_in_its_throwaway_bucket_and_the_banner_commands_work(demo, tmp_path):
    """The banner's stored-backup block, pasted into a shell: upload, list, restore the newest from the
    bucket. GET /api/v1/stored (what the dashboard's section shows) sees the same bucket, schedule and
    retention (a real moto server on loopback); the page itself is not loaded here."""
    block = demo.banner.split("Stored backups from a shell", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines()[1:] if line.strip()]
    cli = str(BIN / "backup-svc")
    assert [line.split(" ", 1)[0] for line in lines] == [
        "export",
        "export",
        "export",
        cli,
        cli,
        cli,
        "NAME=$(" + cli,
        cli,
    ]
    endpoint = demo.value(r"on a throwaway S3 server at (http://127\.0\.0\.1:\d+) ")
    assert "BACKUP_SCHEDULE='*/5 * * * *'" in demo.banner and "BACKUP_RETENTION=last=6" in demo.banner
    # The demo's own scheduled backup (every fifth minute, UTC) holds the backup lock while it runs, and a pasted
    # upload then exits 75 by design ("another stored backup is running"): paste clear of it.
    to_next = 300 - time.time() % 300
    if to_next < 60:
        time.sleep(to_next + 20)
    done = bash("\n".join(lines), tmp_path, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert re.search(r"^[0-9a-f]{64}  s3://demo-backups/shop/shop_backup_\d{8}_\d{6}\.sql\.gz$", done.stdout, re.M)
    assert "restored s3://demo-backups/shop/shop_backup_" in done.stdout
    assert re.search(r"^\S+Z  upload  outcome stored-run +ok +upload command", done.stdout, re.M), done.stdout
    restored = table_rows(with_database(demo.database_url, "shop_from_bucket"))
    assert restored == table_rows(demo.database_url) and sum(restored.values()) > 0
    token = demo.value(r"Bearer ([^']+)'")
    listed = subprocess.run(
        ["curl", "-fsS", "-H", f"Authorization: Bearer {token}", f"http://localhost:{demo.port}/api/v1/stored"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body = json.loads(listed.stdout)
    assert body["storage"] == {"url": "s3://demo-backups/shop/", "endpoint": endpoint}
    assert body["backups"] and body["backups"][0]["name"].startswith("shop_backup_")
    assert body["schedule"]["expression"] == "*/5 * * * *" and body["retention"]["setting"] == "last=6"


def test_a_taken_port_is_refused_before_anything_is_printed(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        env = newcomer_environ()
        ran = subprocess.run(
            [sys.executable, "-m", "backup_svc", "serve", "--demo"],
            cwd=tmp_path,
            env={**env, "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 1 and ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in line
    assert re.search(r"Pick another port: PORT=\d+ \./dev\.sh run", line)
    assert time.monotonic() - started < 10  # no PostgreSQL was started, no gunicorn retries


def test_the_port_is_held_before_the_demo_starts_its_database_and_prints_the_banner(tmp_path):
    """Nothing can take the port while the demo starts (the newcomer's `./dev.sh run` that printed its
    banner and then could not bind): it is bound first, and the banner comes from the process that holds it."""
    port = free_port()
    env = newcomer_environ()
    proc = subprocess.Popen(
        [sys.executable, "-m", "backup_svc", "serve", "--demo"],
        cwd=tmp_path,
        env={**env, "PORT": str(port), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("Starting a throwaway PostgreSQL"), first
        # The database is starting, no banner yet: the port is already this process's.
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as intruder:
                with pytest.raises(OSError):
                    intruder.bind((address, port))
        rest = []
        for line in proc.stdout:
            rest.append(line)
            if "Starting gunicorn" in line:
                break
        output = "".join(rest)
        assert f"Dashboard: http://localhost:{port}/" in output, output
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert conn.recv(64).split(b" ")[1] == b"200"
    finally:
        # Ctrl-C right after a request: the worker's main thread is often still in its thread pool's
        # submit then, where gunicorn's own quit deadlocked (serving/worker.py, handle_quit).
        os.killpg(proc.pid, signal.SIGINT)
        asked = time.monotonic()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert time.monotonic() - asked < 10, "Ctrl-C did not stop the demo (the worker hung)"
    database_port = int(re.search(r"Database:\s+postgresql://[^@]+@127\.0\.0\.1:(\d+)/", output).group(1))
    with pytest.raises(OSError):  # and its throwaway PostgreSQL went with it
        socket.create_connection(("127.0.0.1", database_port), timeout=2).close()


def test_a_start_that_fails_after_the_database_is_up_stops_the_database(monkeypatch):
    """The demo's PostgreSQL runs in a session of its own, so a start that fails after it is up (the
    throwaway S3 server, a Ctrl-C while the banner is made) must stop it, or it outlives the demo.

    Faked: the S3 server's start raises, standing in for a failure there or a Ctrl-C at that moment
    (neither can be caused at that exact point from outside the process)."""
    from backup_svc import demo as demo_module

    def storage_fails(env):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_module, "start_storage", storage_fails)
    env = newcomer_environ()
    with pytest.raises(KeyboardInterrupt):
        demo_module.start_demo(env)
    url = urlsplit(env["DATABASE_URL"])  # the sample data was loaded: the database was up
    try:
        with pytest.raises(OSError):
            socket.create_connection((url.hostname, url.port), timeout=2).close()
    finally:  # a failing run must not leave the cluster behind either
        try:
            with psycopg.connect(env["DATABASE_URL"], connect_timeout=2) as db:
                data = db.execute("SHOW data_directory").fetchone()[0]
            os.kill(int(Path(data, "postmaster.pid").read_text().split()[0]), signal.SIGQUIT)
        except psycopg.OperationalError:
            pass


# -- every command the docs mark, run as written ------------------------------------------------
def marked_blocks(path: Path) -> list[str]:
    """The shell blocks of a Markdown file that follow a DEMO_TEST_MARKER line."""
    tokens = markdown_parser().parse(path.read_text(encoding="utf-8"))
    blocks = []
    for before, token in zip(tokens, tokens[1:]):
        if token.type == "fence" and before.type == "html_block" and before.content.strip() == DEMO_TEST_MARKER:
            assert token.info.strip() == "sh", f"{path.name}: a marked block must be ```sh"
            blocks.append(token.content)
    return blocks


MARKED = [(path, n, block) for path in DOCS for n, block in enumerate(marked_blocks(path))]


def test_the_docs_mark_the_commands_a_newcomer_runs():
    counts = {path.name: sum(1 for p, _, _ in MARKED if p == path) for path in DOCS}
    assert counts["README.md"] >= 3 and counts["api.md"] >= 5 and counts["restore.md"] >= 2, counts
    assert counts["main-app-integration.md"] >= 1, counts


@pytest.fixture(scope="module")
def a_backup(demo, tmp_path_factory) -> Path:
    """One real backup of the demo database, for the blocks that use an example file name."""
    path = tmp_path_factory.mktemp("backup") / "backup.sql.gz"
    token = demo.value(r"Bearer ([^']+)'")
    got = subprocess.run(
        [
            "curl",
            "-fsS",
            "-o",
            str(path),
            "-H",
            f"Authorization: Bearer {token}",
            f"http://localhost:{demo.port}/api/v1/backup",
        ],
        capture_output=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    # and one stored backup in the demo's bucket, as a deployed service on a schedule has
    stored = subprocess.run(
        [sys.executable, "-m", "backup_svc", "upload"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **demo.storage_env()},
    )
    assert stored.returncode == 0, stored.stderr
    return path


@pytest.mark.parametrize("path,n,block", MARKED, ids=[f"{p.name}-{n}" for p, n, _ in MARKED])
def test_marked_doc_command_runs_as_written(demo, a_backup, path, n, block, tmp_path):
    """The placeholders the docs define (URL, ADMIN_TOKEN, PG*, TARGET_URL, an example file name) are the demo's."""
    server = urlsplit(demo.database_url)
    target = f"restored_{path.stem.replace('-', '_')}_{n}"
    for name in set(EXAMPLE_BACKUP.findall(block)):
        shutil.copy(a_backup, tmp_path / name)
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "URL": f"http://localhost:{demo.port}",
        "ADMIN_TOKEN": demo.value(r"Bearer ([^']+)'"),
        "ADMIN_PASSWORD": demo.value(r"password: (\S+)"),
        "PGHOST": server.hostname,
        "PGPORT": str(server.port),
        "PGUSER": server.username,
        "PGPASSWORD": server.password,
        "TARGET_URL": with_database(demo.database_url, target).replace(f":{server.password}@", "@"),
        "LINK_SECRET": LINK_SECRET,
        # inside the service's container: DATABASE_URL and the bucket's variables (docs/restore.md, path B)
        **demo.storage_env(),
    }
    ran = bash(block, tmp_path, env)
    assert ran.returncode == 0, (
        f"{path.name} block {n} failed:\n{block}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
    )
    assert "Traceback" not in ran.stderr
    restored = [name for name in re.findall(r"\brestored_\w+", block) + ([target] if "TARGET_URL" in block else [])]
    for name in restored:  # whatever a block restored holds the demo's rows
        if "restore" in block or "psql" in block:
            assert table_rows(with_database(demo.database_url, name)) == table_rows(demo.database_url), name
