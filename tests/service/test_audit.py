"""The audit trail against the real gunicorn: one JSON line per attempt, the in-memory list, no secrets."""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import time
from datetime import datetime, timezone

import pytest

from backup_svc.links import link_signature
from tests.http_client import basic, bearer
from tests.processes import wait_until
from tests.service_process import Service, wait_idle

SECRET = "audit-link-secret-" + "y" * 16


@pytest.fixture(scope="module")
def audited(rich_db, pg_cluster, tmp_path_factory):
    """A service behind one trusted proxy hop, with signed links and a low failed-login limit.

    Each test sends its own X-Forwarded-For address and User-Agent, so tests sharing it stay apart.
    """
    service = Service(
        {"DATABASE_URL": rich_db, "LINK_SECRET": SECRET, "TRUSTED_PROXY_HOPS": "1", "AUTH_FAILURES_PER_MINUTE": "3"},
        tmp_path_factory.mktemp("audit") / "service.log",
    ).start()
    yield service
    service.stop()


def client(n: int) -> dict[str, str]:
    """Headers of a distinct client behind the proxy, with a User-Agent to find its audit lines by."""
    return {"X-Forwarded-For": f"198.51.100.{n}", "User-Agent": f"audit-test/{n} {secrets.token_hex(4)}"}


def audit_lines(service) -> list[dict]:
    """Every audit line of an attempt's outcome the service logged, parsed (not the `backup_started` ones)."""
    marker = "backup_svc.audit: "
    lines = [json.loads(line.split(marker, 1)[1]) for line in service.log().splitlines() if marker in line]
    return [line for line in lines if line["event"] != "backup_started"]


def lines_of(service, headers, count: int = 1) -> list[dict]:
    """The audit lines of one client (by its User-Agent), once `count` of them were written."""

    def mine():
        found = [e for e in audit_lines(service) if e["user_agent"] == headers["User-Agent"]]
        return found if len(found) >= count else None

    found = wait_until(mine, timeout_s=10)
    assert found, f"no audit line for {headers['User-Agent']}"
    return found


def copied_rows(sql: bytes) -> int:
    """The rows in a plain dump's COPY blocks (one line each: COPY escapes newlines in values)."""
    rows, copying = 0, False
    for line in sql.split(b"\n"):
        if copying and line == b"\\.":
            copying = False
        elif copying:
            rows += 1
        elif line.startswith(b"COPY ") and line.endswith(b" FROM stdin;"):
            copying = True
    return rows


def test_a_download_is_one_line_with_every_field(audited):
    headers = client(1)
    before = time.time()
    wait_idle(audited)
    reply = audited.request("GET", "/api/v1/backup", {**headers, **audited.auth()})
    assert reply.status == 200 and reply.complete

    [entry] = lines_of(audited, headers)

    assert entry["event"] == "backup"
    logged_at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert entry["time"].endswith("Z") and logged_at.tzinfo == timezone.utc
    assert before - 1 <= logged_at.timestamp() <= time.time()
    assert entry["actor"] == "token"
    assert entry["client"] == "198.51.100.1"  # from the trusted hop, not the loopback peer
    assert entry["outcome"] == "ok" and entry["status"] == 200
    assert entry["bytes"] == len(reply.body) and entry["sql_bytes"] > entry["bytes"]
    assert entry["duration_s"] >= 0
    assert entry["id"] == reply.headers["X-Backup-Id"]
    assert entry["error"] is None
    assert entry["user_agent"] == headers["User-Agent"]
    assert entry["sha256"] == hashlib.sha256(reply.body).hexdigest()
    sql = gzip.decompress(reply.body)
    assert entry["sql_bytes"] == len(sql) and entry["rows"] == copied_rows(sql) > 0
    assert entry["name"] is None  # a download has no stored backup's name
    assert set(entry) == {
        "event",
        "time",
        "id",
        "actor",
        "client",
        "user_agent",
        "outcome",
        "status",
        "bytes",
        "sql_bytes",
        "rows",
        "duration_s",
        "error",
        "sha256",
        "name",
    }  # every field is asserted above: a new one must be added here and there


def test_actor_is_the_basic_user_or_signed_link(audited):
    user_headers, link_headers = client(2), client(3)
    assert audited.request("GET", "/api/v1/backup", {**user_headers, **basic("admin", audited.password)}).status == 200
    wait_idle(audited)
    expires = int(time.time()) + 60
    link = f"/api/v1/backup?expires={expires}&sig={link_signature(SECRET, 'GET', '/api/v1/backup', expires)}"
    assert audited.request("GET", link, link_headers).status == 200

    assert lines_of(audited, user_headers)[0]["actor"] == "admin"
    assert lines_of(audited, link_headers)[0]["actor"] == "signed link"


@pytest.mark.parametrize(
    "n,extra,status",
    [
        (10, {}, 401),
        (11, bearer("wrong-token-wrong-token"), 401),
        (12, {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"}, 403),
    ],
)
def test_refused_attempts_are_audited_without_an_actor(audited, n, extra, status):
    headers = client(n)
    assert audited.request("GET", "/api/v1/backup", {**headers, **extra}).status == status

    [entry] = lines_of(audited, headers)

    assert (entry["outcome"], entry["status"], entry["actor"]) == ("denied", status, None)
    assert entry["client"] == f"198.51.100.{n}" and entry["bytes"] == 0 and entry["error"]


def test_throttled_attempts_are_audited(audited):
    headers = client(20)
    for _ in range(3):
        assert audited.request("GET", "/api/v1/backup", {**headers, **bearer("guess-guess-guess")}).status == 401
    assert audited.request("GET", "/api/v1/backup", {**headers, **audited.auth()}).status == 429

    entries = lines_of(audited, headers, count=4)
    assert [e["status"] for e in entries] == [401, 401, 401, 429]
    assert "try again in" in entries[-1]["error"]


def test_head_and_other_endpoints_are_not_backup_attempts(audited):
    headers = client(30)
    assert audited.request("HEAD", "/api/v1/backup", {**headers, **audited.auth()}).status == 200
    assert audited.request("GET", "/api/v1/database", {**headers, **audited.auth()}).status == 200
    assert audited.request("GET", "/api/v1/database", headers).status == 401
    for path in ("/api/v1/audit", "/"):  # more of the other endpoints, with and without credentials
        assert audited.request("GET", path, {**headers, **audited.auth()}).status == 200
        assert audited.request("GET", path, headers).status == 401
    time.sleep(0.3)
    assert not [e for e in audit_lines(audited) if e["user_agent"] == headers["User-Agent"]]


def test_audit_endpoint_lists_recent_attempts_newest_first(audited):
    headers = client(40)
    assert audited.request("GET", "/api/v1/audit", headers).status == 401
    for _ in range(2):
        wait_idle(audited)
        assert audited.request("GET", "/api/v1/backup", {**headers, **audited.auth()}).status == 200
    logged = lines_of(audited, headers, count=2)

    reply = audited.request("GET", "/api/v1/audit", audited.auth())

    assert reply.status == 200
    body = reply.json()
    assert body["limit"] == 50 and "lost on restart" in body["note"] and body["history"]["durable"] is False
    times = [e["time"] for e in body["entries"]]
    assert times == sorted(times, reverse=True)
    mine = [e for e in body["entries"] if e["user_agent"] == headers["User-Agent"]]
    # each entry is the logged line plus where it was recorded (process, kind, type)
    assert [{key: e[key] for key in logged[0]} for e in mine] == sorted(logged, key=lambda e: e["time"], reverse=True)
    assert {(e["process"], e["kind"], e["type"]) for e in mine} == {("serve", "audit", "backup")}


def test_logs_hold_no_secret_and_no_query_string(audited, pg_cluster):
    guess = "not-my-password-" + secrets.token_hex(8)
    expires = int(time.time()) + 60
    sig = link_signature(SECRET, "GET", "/api/v1/backup", expires)
    headers = client(50)
    sent = [  # the good ones first: three failures reach the limit and would turn them into 429s
        ("GET", f"/api/v1/backup?expires={expires}&sig={sig}", {}),
        ("GET", "/api/v1/database", basic("admin", audited.password)),
        ("GET", "/api/v1/backup", audited.auth()),
        ("GET", f"/api/v1/backup?expires={expires}&sig={sig[::-1]}", {}),
        ("GET", "/api/v1/backup", bearer(guess)),
        ("GET", "/api/v1/backup", basic(guess, guess)),  # a password typed into the user field
    ]
    statuses = []
    for method, path, extra in sent:
        wait_idle(audited)
        statuses.append(audited.request(method, path, {**headers, **extra}).status)
    assert statuses == [200, 200, 200, 403, 401, 401]
    lines_of(audited, headers, count=5)

    def access_lines():
        found = [line for line in audited.log().splitlines() if headers["User-Agent"] in line and "HTTP/1.1" in line]
        return found if len(found) == len(sent) else None

    access = wait_until(access_lines, timeout_s=10)
    assert access and all(line.startswith("198.51.100.50 - - [") for line in access)
    log = audited.log()

    assert "GET /api/v1/backup HTTP/1.1" in log  # the access log names the path ...
    assert "expires=" not in log and "sig=" not in log  # ... but not the query string
    for secret in (audited.token, audited.password, SECRET, sig, sig[::-1], guess, pg_cluster.password):
        assert secret not in log


@pytest.mark.parametrize("query,status", [("progress_id=bad", 400), ("progress_id=audit-reused-0001", 409)])
def test_an_id_the_service_turns_down_is_refused_not_failed(audited, query, status):
    """`failed` means a dump broke mid-stream; a request turned down before any dump is `refused`."""
    if status == 409:
        wait_idle(audited)
        assert audited.request("GET", "/api/v1/backup?progress_id=audit-reused-0001", audited.auth()).status == 200
    headers = client(40 + status % 10)
    wait_idle(audited)
    assert audited.request("GET", f"/api/v1/backup?{query}", {**headers, **audited.auth()}).status == status
    [entry] = lines_of(audited, headers)
    assert (entry["outcome"], entry["status"], entry["actor"]) == ("refused", status, "token")
