"""A throwaway PostgreSQL cluster in a temporary folder: the demo's database and the tests'."""

from __future__ import annotations

import errno
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

from backup_svc.pg.binaries import find_binaries

# PostgreSQL refuses to run as root; when we are root, the cluster runs as this user.
UNPRIVILEGED_USER = "nobody"


def free_port() -> int:
    """A TCP port that nothing holds right now, chosen below the kernel's ephemeral range.

    Port 0 would hand out a port from the ephemeral range, the one every outgoing connection takes its
    local port from: between choosing the port and the server binding it, a client connection (to
    another test's server, say) could take it, and the server fails with "port in use". Ports below
    that range are only ever taken by servers that ask for them; each one is handed out once per process.
    """
    low = _ephemeral_low()
    first = max(1024, low - 12000)
    for _ in range(200):
        port = random.randrange(first, low)
        if port in _handed_out or not _bindable(port):
            continue
        _handed_out.add(port)
        return port
    with socket.socket() as probe:  # a crowded machine: let the kernel choose
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return max(2048, int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    """Whether both loopback and the any-address (both families, as the service listens) are free."""
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address, port))
        except OSError as exc:
            if family == socket.AF_INET6 and exc.errno == errno.EAFNOSUPPORT:
                continue
            return False
    return True


def find_server_bin_dir(bin_dirs: list[str]) -> str:
    """The folder of the newest installed PostgreSQL server (one holding `postgres` and `initdb`)."""
    servers = [
        b
        for b in find_binaries("postgres", bin_dirs)
        if os.access(os.path.join(os.path.dirname(b.path), "initdb"), os.X_OK)
    ]
    if not servers:
        raise RuntimeError(
            "no PostgreSQL server binaries (postgres, initdb) found in PG_BIN_DIRS or "
            "/usr/lib/postgresql/*/bin; install the postgresql package"
        )
    return os.path.dirname(servers[-1].path)


class LocalCluster:
    """initdb + postgres on 127.0.0.1:<port>, password (scram) auth for TCP.

    By default it lives in a new temporary folder that `stop()` removes; given `root`, the cluster is
    kept there and reused by the next start (the benchmark's databases take minutes to build).
    """

    def __init__(
        self,
        bin_dir: str,
        *,
        port: int | None = None,
        password: str | None = None,
        root: str | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(18)
        self.user = "postgres"
        self.root: str | None = root
        self.keep = root is not None
        self.settings = settings or {}  # extra server settings (`-c name=value`), e.g. for the tests' faults
        self._server: subprocess.Popen | None = None
        self._owner_pid = os.getpid()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> "LocalCluster":
        """Create the cluster and wait until it accepts connections."""
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="backup_svc-pg-")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        data, pwfile = os.path.join(self.root, "data"), os.path.join(self.root, "pw")
        if os.path.exists(os.path.join(data, "PG_VERSION")):
            with open(pwfile) as f:  # a kept cluster: its password was set by initdb
                self.password = f.read()
        else:
            with open(pwfile, "w") as f:
                f.write(self.password)
            os.chmod(pwfile, 0o600)
            self._chown(self.root, pwfile)
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    data,
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ]
            )
            if not self.keep:
                os.unlink(pwfile)
        self._log = open(os.path.join(self.root, "postgres.log"), "ab")
        self._server = subprocess.Popen(
            [
                self._bin("postgres"),
                "-D",
                data,
                "-p",
                str(self.port),
                "-k",
                self.root,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=60",
                "-c",
                "shared_buffers=64MB",
                *[arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")],
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
            **self._as_user(),
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.connect():
                    return self
            except psycopg.OperationalError:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"PostgreSQL in {self.bin_dir} did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown and remove every file. Only the process that started it stops it."""
        if os.getpid() != self._owner_pid:
            return  # a forked child (a gunicorn worker) inherited this object; not its cluster
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()  # SIGTERM: smart shutdown would wait; we then force it
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        self._server = None
        if self.root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- using it -----------------------------------------------------------------------------
    def socket_url(self, dbname: str = "postgres") -> str:
        """libpq URI of `dbname` over the cluster's unix socket (local connections are trusted)."""
        return f"postgresql://{self.user}@/{dbname}?host={self.root}&port={self.port}"

    def url(self, dbname: str = "postgres", *, password: str | None = None, with_password: bool = True) -> str:
        """libpq URI of `dbname` over TCP, with the superuser's password (or `password`, or none)."""
        auth = f"{self.user}:{password or self.password}" if with_password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit superuser connection."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str, sql: str | None = None) -> str:
        """Create database `name` (dropping an old one), run `sql` in it, return its URI."""
        with self.connect() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}"')
        if sql:
            self.psql(name, sql)
        return self.url(name)

    def psql(self, dbname: str, sql: str) -> str:
        """Run `sql` with psql (stops at the first error); return its output."""
        result = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname, with_password=False)],
            input=sql,
            text=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": self.password},
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed in {dbname}: {result.stderr.strip()}")
        return result.stdout

    # -- helpers ------------------------------------------------------------------------------
    def _bin(self, name: str) -> str:
        return os.path.join(self.bin_dir, name)

    def _as_user(self) -> dict:
        return {"user": UNPRIVILEGED_USER} if os.geteuid() == 0 else {}

    def _chown(self, *paths: str) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, **self._as_user())
        if result.returncode != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} failed: {result.stderr.strip()[-2000:]}")
