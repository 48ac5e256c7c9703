"""Signed-link signatures and passwords never reach a log line or an error body, gunicorn's own included."""

from __future__ import annotations

import re
import socket

import pytest

from backup_svc.links import signed_backup_url

SECRET = "secrets-link-secret-" + "k" * 16


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


@pytest.fixture(scope="module")
def secret_service(rich_db, tmp_path_factory):
    from tests.service_process import Service

    service = Service(
        {"DATABASE_URL": rich_db, "LINK_SECRET": SECRET}, tmp_path_factory.mktemp("secrets") / "service.log"
    ).start()
    yield service
    service.stop()


def _malformed(service) -> dict[str, tuple[bytes, str]]:
    """Malformed requests gunicorn itself refuses, each carrying a secret, and that secret."""
    link = signed_backup_url(service.base_url, SECRET, 60)
    target = link[len(service.base_url) :].encode()
    sig = re.search(r"sig=([0-9a-f]+)", link).group(1)
    token = service.token.encode()
    return {
        "control byte in the request line": (b"GET " + target + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n", sig),
        "space in the target": (b"GET " + target + b" x HTTP/1.1\r\nHost: x\r\n\r\n", sig),
        "bad HTTP version": (b"GET " + target + b" HTTP/9.9\r\nHost: x\r\n\r\n", sig),
        "control byte in a header": (
            b"GET /api/v1/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\x01\r\n\r\n",
            service.token,
        ),
        "bad header name": (
            b"GET /api/v1/backup HTTP/1.1\r\nHost: x\r\nBearer " + token + b": x\r\n\r\n",
            service.token,
        ),
        "obsolete line folding": (
            b"GET /api/v1/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + token + b"\r\n\r\n",
            service.token,
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "control byte in the request line",
        "space in the target",
        "bad HTTP version",
        "control byte in a header",
        "bad header name",
        "obsolete line folding",
    ],
)
def test_gunicorn_refusals_show_no_secret(secret_service, case):
    request, secret = _malformed(secret_service)[case]
    received = _raw(secret_service.port, request)

    assert re.match(rb"HTTP/1\.1 4\d\d ", received), received[:200]
    assert secret.encode() not in received
    assert secret not in secret_service.log()
    assert secret[:16] not in secret_service.log()


# -- /readyz: ready or not, nothing more, and cheap -------------------------------------------------
def test_readyz_tells_anonymous_callers_only_a_generic_reason(start_service, pg_cluster):
    url = pg_cluster.url("rich", password="wrong-password-readyz")
    service = start_service(DATABASE_URL=url)
    reply = service.request("GET", "/readyz")

    assert reply.status == 503
    message = reply.json()["message"]
    assert message.startswith("Not ready: the database cannot be reached or refuses the connection.")
    for detail in ("127.0.0.1", str(pg_cluster.port), "postgres", "rich", "password", "wrong-password-readyz"):
        assert detail not in message.replace("refuses the connection", ""), detail
    # The details are for those who may see them.
    details = service.request("GET", "/api/v1/database", service.auth())
    assert details.status == 502 and "rejected the user or password" in details.json()["message"]


def test_readyz_when_ready_says_only_so(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db)
    reply = service.request("GET", "/readyz")
    assert reply.status == 200 and reply.json() == {"status": "ready"}


def test_a_readyz_loop_costs_at_most_one_connection_per_interval(pg_cluster, start_service):
    """Counted by PostgreSQL itself: pg_stat_database.sessions of a database only the service uses."""
    import time

    from backup_svc.web.state import READINESS_TTL_S

    url = pg_cluster.create_database("readyz_loop", "CREATE TABLE t (id int);")

    def sessions() -> int:
        with pg_cluster.connect() as db:  # the postgres database: not counted below
            return db.execute("SELECT sessions FROM pg_stat_database WHERE datname = 'readyz_loop'").fetchone()[0]

    service = start_service(DATABASE_URL=url)
    before = sessions()
    started, answered = time.monotonic(), 0
    while time.monotonic() - started < 2 * READINESS_TTL_S:
        assert service.request("GET", "/readyz").status == 200
        answered += 1
    time.sleep(0.5)
    opened = sessions() - before
    assert answered > 100
    assert opened <= 3, f"{answered} requests opened {opened} database sessions"


# -- start-up with a malformed DATABASE_URL ---------------------------------------------------------
PASSWORD_PIECES = ("Qx7v", "Zk9w", "Wm4x")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://user:Qx7v/Zk9w@127.0.0.1:5432/db",  # '/' makes "Qx7v" the port
        "postgres://user:1234/Zk9w@127.0.0.1:5432/db",  # ... a valid port: host "user", database "Zk9w@…"
        "postgres://user:Qx7v#Zk9w@127.0.0.1:5432/db",
        "postgres://user:1234?Zk9w@127.0.0.1/db",
        "postgres://user:Qx7v[Zk9w]Wm4x@127.0.0.1/db",
        "postgres://user:Qx7v]Zk9w@127.0.0.1/db",
    ],
)
@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_malformed_database_url_prints_no_part_of_the_password(url, command):
    from backup_svc.pg.localcluster import free_port
    from tests.processes import run_cli

    # An invalid BACKUP_NAME as well: whatever the URL does, the service never gets as far as listening.
    # Its own free port: `serve` refuses the configuration (exit 2; not 1, "port in use") whatever else
    # listens on 8080; `check` reports it as a failed check (exit 1).
    result = run_cli(
        command,
        env={"DATABASE_URL": url, "ADMIN_TOKEN": "t" * 24, "BACKUP_NAME": "not a name!", "PORT": str(free_port())},
    )
    output = result.stdout + result.stderr
    assert result.returncode == {"serve": 2, "check": 1}[command], output
    assert "DATABASE_URL" in output and "percent-encoded" in output
    for piece in PASSWORD_PIECES:
        assert piece not in output, output
