"""Fixtures: a real PostgreSQL cluster (run unprivileged), databases, real service processes, moto's S3
server on loopback and a headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir
from tests import REPO, receivers
from tests.databases import DATA, LockedTable
from tests.freezable_proxy import FreezableProxy
from tests.processes import run_cli
from tests.service_process import LINK_MAX_TTL, LINK_SECRET, Service

# Debian's chromium, driven by Playwright (whose own browser download is never used).
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Screenshots of pages whose test failed (gitignored; CI keeps the folder as an artifact).
ARTIFACTS = REPO / "artifacts"

# A suite started in the background (`./dev.sh test &`, a CI runner's job) inherits SIGINT ignored, and
# so would every process it starts: the tests that press Ctrl-C on `upload` or the demo would see it
# ignored. Python's own handler here makes started processes begin with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the session (the newest installed major)."""
    bin_dirs = pg_bin_dirs(os.environ)
    with LocalCluster(find_server_bin_dir(bin_dirs)) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rich_db(pg_cluster) -> str:
    """URL of a database holding many kinds of objects (tests/data/rich.sql)."""
    return pg_cluster.create_database("rich", (DATA / "rich.sql").read_text())


@pytest.fixture
def fresh_db(pg_cluster):
    """Factory: a new database holding `sql` -> (name, URL); dropped after the test."""
    made: list[str] = []

    def make(prefix: str, sql: str) -> tuple[str, str]:
        name = f"{prefix}_{len(made)}_{int(time.time() * 1000) % 10_000_000}"
        made.append(name)
        return name, pg_cluster.create_database(name, sql)

    yield make
    with pg_cluster.connect() as db:
        for name in made:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def big_db(pg_cluster) -> str:
    """URL of a database whose dump (~60 MB gzipped) outlasts socket and pipe buffers."""
    return pg_cluster.create_database(
        "big",
        """
        CREATE EXTENSION pgcrypto;
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO blobs SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000) FROM generate_series(1, 20000) g;
    """,
    )


@pytest.fixture
def start_service(tmp_path):
    """Factory: start `python -m backup_svc serve` with extra environment; all are stopped afterwards."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        service = Service(env, tmp_path / f"service-{len(started)}.log")
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="module")
def rich_service(rich_db, pg_cluster, tmp_path_factory):
    """A service backing up the rich database, shared by a module's tests."""
    service = Service({"DATABASE_URL": rich_db}, tmp_path_factory.mktemp("svc") / "service.log").start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def downloads_dir(tmp_path_factory):
    """Where the browser writes downloads while they arrive (files named by Playwright, one per download)."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads_dir):
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, downloads_path=str(downloads_dir)
        )
        yield chromium
        chromium.close()


@pytest.fixture
def open_dashboard(browser, request):
    """Factory: a fresh browser context logged in (HTTP basic) to a service, on its dashboard.

    When the test fails, every page it opened is saved to artifacts/<test>-<n>.png first.
    """
    pages = []

    def open_(service: Service, *, width: int = 1000, height: int = 900, password: str | None = None):
        context = browser.new_context(
            accept_downloads=True,
            viewport={"width": width, "height": height},
            http_credentials={"username": "admin", "password": password or service.password},
        )
        page = context.new_page()
        pages.append(page)
        page.goto(f"{service.base_url}/")
        return page

    yield open_
    report = getattr(request.node, "report_call", None)
    for n, page in enumerate(pages):
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
            page.screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
        page.context.close()


@pytest.fixture(scope="module")
def link_service(rich_db, pg_cluster, tmp_path_factory):
    """The rich database's service with signed links on (LINK_MAX_TTL=300)."""
    service = Service(
        {"DATABASE_URL": rich_db, "LINK_SECRET": LINK_SECRET, "LINK_MAX_TTL": str(LINK_MAX_TTL)},
        tmp_path_factory.mktemp("links") / "service.log",
    ).start()
    yield service
    service.stop()


@pytest.fixture
def locked_cache(pg_cluster, rich_db):
    """app.cache of the rich database locked ACCESS EXCLUSIVE, as a migration would (released afterwards)."""
    lock = LockedTable(pg_cluster, "rich", "app.cache")
    yield lock
    lock.release()


@pytest.fixture
def db_proxy(pg_cluster):
    """A FreezableProxy in front of the session's PostgreSQL: a database link a test can stall."""
    link = FreezableProxy(pg_cluster.port)
    yield link
    link.close()


# -- object storage: one moto S3 server per session, a fresh bucket per test ---------------------
@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server on 127.0.0.1 for the whole session."""
    from tests.s3support import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_s3):
    """A client straight to the server (the test's own view of the bucket), and a fresh bucket."""
    from backup_svc.storage.client import make_client
    from tests.s3support import new_bucket, s3_env

    client = make_client(s3_env(moto_s3.endpoint))
    return client, new_bucket(client)


@pytest.fixture
def fault_proxy(moto_s3):
    """A fault-injecting proxy in front of the server, and a client that goes through it."""
    from backup_svc.storage.client import make_client
    from tests.s3support import FaultProxy, s3_env

    proxy = FaultProxy(moto_s3.port).start()
    yield proxy, make_client(s3_env(proxy.endpoint))
    proxy.stop()


@pytest.fixture(scope="session")
def backup(rich_db, tmp_path_factory):
    """A backup of the rich database written by `python -m backup_svc dump`, once for the whole run.

    Read-only: a test that damages a backup writes a copy.
    """
    folder = tmp_path_factory.mktemp("backup")
    result = run_cli("dump", "-o", "rich.sql.gz", env={"DATABASE_URL": rich_db}, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "rich.sql.gz"


@pytest.fixture
def receiver():
    """Factory: a real HTTP receiver on loopback that records each request (tests/receivers.py)."""
    with receivers.receivers() as make:
        yield make


@pytest.fixture
def smtp_server():
    """A real SMTP server (aiosmtpd) on loopback: (controller, mailbox)."""
    with receivers.smtp_server() as server:
        yield server


# -- age encryption: key pairs made by Debian's tools ---------------------------------------------
@pytest.fixture(scope="session")
def age_keys(tmp_path_factory) -> dict:
    """An age key pair and a second one (age-keygen), an ssh-ed25519 and an ssh-rsa key pair (ssh-keygen),
    as files; `<kind>_public` holds each public key as text."""
    import subprocess

    folder = tmp_path_factory.mktemp("age-keys")
    found = {"dir": folder}
    for name in ("age", "other"):
        subprocess.run(["age-keygen", "-o", str(folder / f"{name}.txt")], check=True, capture_output=True)
        found[name] = folder / f"{name}.txt"
        found[f"{name}_public"] = subprocess.run(
            ["age-keygen", "-y", str(found[name])], check=True, capture_output=True, text=True
        ).stdout.strip()
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"{kind}@test", "-f", str(folder / kind)],
            check=True,
        )
        found[kind] = folder / kind
        found[f"{kind}_public"] = (folder / f"{kind}.pub").read_text().strip()
    return found


@pytest.fixture
def served(tmp_path):
    """`rclone serve webdav|sftp` of a folder on a free loopback port; yields (folder, start(read_only, kind) -> env)."""
    folder = tmp_path / "served"
    folder.mkdir()
    children = []

    def start(read_only: bool = False, kind: str = "webdav") -> dict:
        from bench.rclone import rclone_serve

        flags = (["--no-auth"] if kind == "sftp" else []) + (["--read-only"] if read_only else [])
        child, port = rclone_serve(kind, folder, *flags, env={**os.environ, "HOME": str(tmp_path)})
        children.append(child)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SECRET_NOT_FOR_RCLONE": "x"}
        if kind == "sftp":
            obscured = subprocess.run(["rclone", "obscure", "any"], capture_output=True, text=True).stdout.strip()
            return env | {
                "RCLONE_CONFIG_DAV_TYPE": "sftp",
                "RCLONE_CONFIG_DAV_HOST": "127.0.0.1",
                "RCLONE_CONFIG_DAV_PORT": str(port),
                "RCLONE_CONFIG_DAV_USER": "backup",
                "RCLONE_CONFIG_DAV_PASS": obscured,
            }
        return env | {"RCLONE_CONFIG_DAV_TYPE": "webdav", "RCLONE_CONFIG_DAV_URL": f"http://127.0.0.1:{port}/"}

    yield folder, start
    for child in children:
        child.kill()
        child.wait()
