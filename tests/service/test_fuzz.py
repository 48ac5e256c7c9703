"""Malformed credentials, odd query strings and huge headers at every endpoint: never a 500, never a trace.

Two layers: Hypothesis drives the Flask app in-process (hundreds of cases in a few seconds), and a
fixed table of byte-level abuse goes to the real gunicorn, whose own limits answer some of it.
"""

from __future__ import annotations

import base64
import re
import socket
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backup_svc.config import Settings
from backup_svc.web import create_app
from tests.service_process import Service

TRACE = re.compile(rb"Traceback|File \"|\bline \d+, in\b")
LINK_SECRET = "fuzz-link-secret-" + "z" * 16


@pytest.fixture(scope="module")
def app(rich_db):
    """The app in-process, behind one trusted proxy hop, with links on and a low throttle."""
    return create_app(
        Settings.from_env(
            {
                "DATABASE_URL": rich_db,
                "ADMIN_TOKEN": "t" * 32,
                "ADMIN_PASSWORD": "p" * 32,
                "LINK_SECRET": LINK_SECRET,
                "TRUSTED_PROXY_HOPS": "1",
                "AUTH_FAILURES_PER_MINUTE": "5",
            }
        )
    )


def every_path(app) -> list[str]:
    """Each route of the app (placeholders filled in), plus paths that match none."""
    paths = {re.sub(r"<[^>]+>", "x", rule.rule) for rule in app.url_map.iter_rules()}
    return sorted(paths | {"/api/v1/", "/api/v1/backup/", "/nothing", "/api/v1/backup/../database"})


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=200)
authorizations = st.one_of(
    st.none(),
    header_text,
    st.builds("Basic {}".format, header_text),
    st.builds(lambda raw: "Basic " + base64.b64encode(raw).decode(), st.binary(max_size=120)),
    st.builds("Bearer {}".format, header_text),
    st.builds(lambda n: "Bearer " + "A" * n, st.integers(0, 20_000)),
    st.sampled_from(
        [
            "Basic",
            "Bearer",
            "Basic ",
            "Bearer ",
            "Basic ===",
            "Basic Og==",
            "Digest x",
            "bearer x",
            "Basic YWRtaW4=",
            "Bearer \t",
            "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
        ]
    ),
)
query_keys = st.one_of(st.sampled_from(["expires", "sig", "x", ""]), header_text)
query_strings = st.one_of(
    st.lists(st.tuples(query_keys, header_text), max_size=6).map(urlencode),
    st.text(max_size=400),  # raw: stray %, &, =, non-ASCII
    st.builds(lambda n, e: f"expires={e}&sig=" + "f" * n, st.integers(0, 5000), st.integers(-10, 10**15)),
    st.builds(lambda n: "a=" + "%" * n, st.integers(0, 3000)),
)
fetch_values = st.one_of(
    st.none(),
    st.sampled_from(["cross-site", "same-origin", "none", "navigate", "no-cors", "document", "empty", "iframe"]),
    header_text,
)


@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    path_index=st.integers(min_value=0),
    authorization=authorizations,
    query=query_strings,
    site=fetch_values,
    mode=fetch_values,
    forwarded_for=st.one_of(st.none(), header_text),
    user_agent=st.one_of(st.none(), header_text, st.builds(lambda n: "u" * n, st.integers(0, 50_000))),
    peer=st.integers(1, 254),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_app_survives_anything(
    app, method, path_index, authorization, query, site, mode, forwarded_for, user_agent, peer
):
    paths = every_path(app)
    headers = {
        "Authorization": authorization,
        "Sec-Fetch-Site": site,
        "Sec-Fetch-Mode": mode,
        "Sec-Fetch-Dest": mode,
        "X-Forwarded-For": forwarded_for,
        "User-Agent": user_agent,
    }
    headers = {name: value for name, value in headers.items() if value is not None}
    with app.test_client() as client:
        reply = client.open(
            paths[path_index % len(paths)],
            method=method,
            query_string=query,
            headers=headers,
            environ_base={"REMOTE_ADDR": f"10.9.8.{peer}"},
        )
        body = reply.get_data()

    assert reply.status_code < 500, body[:500]
    assert not TRACE.search(body)
    if reply.status_code >= 400 and method != "HEAD" and reply.is_json:
        assert set(reply.get_json()) == {"error", "message"}


# -- the real server, byte by byte ----------------------------------------------------------------
def raw_request(port: int, request: bytes, timeout_s: float = 10) -> tuple[int, bytes]:
    """Send `request` as bytes on a fresh connection; the status and everything that came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    status_line = received.split(b"\r\n", 1)[0]
    match = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    assert match, f"no HTTP status line in {received[:200]!r}"
    return int(match.group(1)), received


def _get(path: bytes, *headers: bytes) -> bytes:
    return (
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: backup\r\nConnection: close\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


ABUSE = {
    "huge authorization": lambda p: _get(p, b"Authorization: Basic " + b"A" * 20_000),
    "long bearer under the limit": lambda p: _get(p, b"Authorization: Bearer " + b"x" * 16_000),
    "many headers": lambda p: _get(p, *[b"X-Filler-%d: y" % i for i in range(150)]),
    "huge user agent": lambda p: _get(p, b"User-Agent: " + b"u" * 16_300),
    "request line too long": lambda p: _get(p + b"?q=" + b"a" * 9000),
    "bad percent-encoding": lambda p: _get(p + b"?sig=%zz%&expires=%ff%fe%"),
    "raw non-UTF-8 query": lambda p: _get(p + b"?expires=\xff\xfe&sig=\xc3\x28"),
    "non-ASCII header value": lambda p: _get(p, b"Authorization: Basic \xff\xfe\xfd", b"Sec-Fetch-Site: \xe9"),
    "non-UTF-8 basic credentials": lambda p: _get(p, b"Authorization: Basic " + base64.b64encode(b"\xff:\xfe\x00")),
    "two authorization headers": lambda p: _get(p, b"Authorization: Bearer a", b"Authorization: Basic Og=="),
    "garbage forwarded-for": lambda p: _get(
        p, b"X-Forwarded-For: ,,, <script>, ::::, 999.1.1.1", b"X-Forwarded-Proto: gopher, https"
    ),
    "link params many times": lambda p: _get(p + b"?" + b"&".join([b"sig=0&expires=1"] * 200)),
    "absolute-form target": lambda p: (
        b"GET http://elsewhere.example" + p + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ),
}


@pytest.fixture(scope="module")
def abused(rich_db, tmp_path_factory):
    """A real service for the byte-level table, behind one trusted hop, with links on."""
    service = Service(
        {"DATABASE_URL": rich_db, "LINK_SECRET": LINK_SECRET, "TRUSTED_PROXY_HOPS": "1"},
        tmp_path_factory.mktemp("fuzz") / "service.log",
    ).start()
    yield service
    service.stop()


@pytest.mark.parametrize(
    "path", [b"/", b"/api/v1/backup", b"/api/v1/database", b"/api/v1/audit", b"/healthz", b"/readyz", b"/nothing"]
)
@pytest.mark.parametrize("abuse", sorted(ABUSE))
def test_real_server_survives_abuse(abused, path, abuse):
    status, received = raw_request(abused.port, ABUSE[abuse](path))

    assert status < 500, received[:300]
    assert not TRACE.search(received), received[:300]
    assert abused.request("GET", "/healthz").status == 200  # still serving


def test_real_server_logged_no_trace(abused):
    """Runs after the table above (same module, same service): nothing it sent raised in the app."""
    assert abused.request("GET", "/api/v1/database", abused.auth()).status == 200
    assert "Traceback" not in abused.log()
