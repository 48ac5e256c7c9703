"""Throttling, cross-site refusal and security headers, against the real gunicorn."""

from __future__ import annotations

import http.client
import time
from html.parser import HTMLParser

import pytest

from tests import REPO
from tests.http_client import basic, bearer

PAGE_CSP_PARTS = ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]


def _assert_json_error(reply, status: int, phrase: str):
    assert reply.status == status
    body = reply.json()
    assert body["error"] == phrase and body["message"]


# -- throttling -----------------------------------------------------------------------------------
def test_failed_logins_are_throttled_then_everything_from_that_address_waits(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="3")
    for _ in range(3):
        assert service.request("GET", "/api/v1/database", bearer("wrong-token-wrong-token")).status == 401

    refused = service.request("GET", "/api/v1/database", bearer("wrong-token-wrong-token"))
    _assert_json_error(refused, 429, "Too Many Requests")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Correct credentials get the same 429 while the address waits: otherwise the 429 would tell a
    # guesser which guess was right.
    assert service.request("GET", "/api/v1/database", service.auth()).status == 429
    assert service.request("GET", "/api/v1/backup", basic("admin", service.password)).status == 429
    # Probes are not behind the login and stay up.
    assert service.request("GET", "/healthz").status == 200


def test_requests_without_credentials_do_not_count(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="2")
    for _ in range(5):  # a browser's first visit, curl without a token: not guesses
        assert service.request("GET", "/api/v1/database").status == 401
    assert service.request("GET", "/api/v1/database", service.auth()).status == 200


def test_throttle_behind_a_proxy_is_per_client_and_unspoofable(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="2", TRUSTED_PROXY_HOPS="1")
    attacker = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(2):
        assert service.request("GET", "/api/v1/database", {**attacker, **bearer("guess-guess-guess")}).status == 401
    assert service.request("GET", "/api/v1/database", {**attacker, **service.auth()}).status == 429
    # The client may prepend anything; the proxy appends the real address, and only that is read.
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    assert service.request("GET", "/api/v1/database", {**spoofed, **service.auth()}).status == 429
    # Another client behind the same proxy is not affected.
    other = {"X-Forwarded-For": "198.51.100.1"}
    assert service.request("GET", "/api/v1/database", {**other, **service.auth()}).status == 200


def test_one_address_in_any_spelling_is_one_client(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="5", TRUSTED_PROXY_HOPS="1")
    spellings = [
        "::ffff:203.0.113.7",
        "203.0.113.7:5555",
        "[::ffff:203.0.113.7]:443",
        "203.000.113.007",
        "[203.0.113.7]",
    ]
    for spelling in spellings:
        headers = {"X-Forwarded-For": spelling, **bearer("guess-guess-guess")}
        assert service.request("GET", "/api/v1/database", headers).status == 401
    assert (
        service.request("GET", "/api/v1/database", {"X-Forwarded-For": "203.0.113.7", **service.auth()}).status == 429
    )
    entries = service.request("GET", "/api/v1/audit", {"X-Forwarded-For": "198.51.100.2", **service.auth()})
    assert entries.status == 200


def test_on_railway_with_a_public_domain_the_edge_is_trusted_by_default(start_service, rich_db):
    """Before, TRUSTED_PROXY_HOPS=0 made every client the edge: ten wrong guesses locked the admin out."""
    service = start_service(
        DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="3", RAILWAY_PUBLIC_DOMAIN="backups-production.up.railway.app"
    )
    for _ in range(3):
        headers = {"X-Forwarded-For": "203.0.113.66", **bearer("guess-guess-guess")}
        assert service.request("GET", "/api/v1/database", headers).status == 401
    admin = {"X-Forwarded-For": "198.51.100.10", **service.auth()}
    assert service.request("GET", "/api/v1/database", admin).status == 200


def test_an_explicit_trusted_proxy_hops_wins_on_railway(start_service, rich_db):
    service = start_service(
        DATABASE_URL=rich_db,
        AUTH_FAILURES_PER_MINUTE="2",
        TRUSTED_PROXY_HOPS="0",
        RAILWAY_PUBLIC_DOMAIN="backups-production.up.railway.app",
    )
    for n in range(2):
        headers = {"X-Forwarded-For": f"203.0.113.{n}", **bearer("guess-guess-guess")}
        assert service.request("GET", "/api/v1/database", headers).status == 401
    assert (
        service.request("GET", "/api/v1/database", {"X-Forwarded-For": "198.51.100.9", **service.auth()}).status == 429
    )


def test_without_a_trusted_proxy_forwarded_for_is_ignored(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="2")
    for n in range(2):
        headers = {"X-Forwarded-For": f"203.0.113.{n}", **bearer("guess-guess-guess")}
        assert service.request("GET", "/api/v1/database", headers).status == 401
    # A new X-Forwarded-For does not make a new client: the peer address is what counts.
    fresh = {"X-Forwarded-For": "198.51.100.99", **service.auth()}
    assert service.request("GET", "/api/v1/database", fresh).status == 429


@pytest.mark.parametrize("forwarded", ["A" * 16000, '203.0.113.7" 200 0 0ms "forged-line', "\u00e9vil\tx"])
def test_a_forwarded_for_that_is_no_address_is_written_nowhere(start_service, rich_db, forwarded):
    """With a trusted proxy, its X-Forwarded-For entry is the client; one that is not an address (a
    proxy misconfigured, or a caller on the private network) is not written into the access log,
    the audit trail or the throttle as it came: it is cut and shown as `invalid`."""
    service = start_service(DATABASE_URL=rich_db, TRUSTED_PROXY_HOPS="1", AUTH_FAILURES_PER_MINUTE="1")
    headers = {"X-Forwarded-For": forwarded}
    assert service.request("GET", "/api/v1/backup", {**headers, **bearer("guess-guess-guess")}).status == 401
    assert service.request("GET", "/healthz", headers).status == 200
    entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    assert {entry["client"] for entry in entries} == {"invalid"}, entries
    time.sleep(0.3)  # the access log line of the last request is written after its response
    log = service.log()
    access = [line for line in log.splitlines() if '"GET /healthz' in line or '"GET /api/v1/backup' in line]
    assert len(access) >= 2 and all(line.startswith("invalid - - [") for line in access[-2:]), access[-2:]
    assert forwarded[:40] not in log
    assert max(len(line) for line in log.splitlines()) < 2000
    # the throttle counted the failed guess under `invalid` too: another non-address is that same client
    other = {"X-Forwarded-For": "not-an-address", **service.auth()}
    assert service.request("GET", "/api/v1/database", other).status == 429


# -- Fetch Metadata -------------------------------------------------------------------------------
def _fetch(site, mode, dest):
    return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}


@pytest.mark.parametrize(
    "method,path,headers,status",
    [
        ("GET", "/api/v1/database", {}, 200),  # curl
        ("GET", "/api/v1/database", _fetch("same-origin", "cors", "empty"), 200),
        ("GET", "/api/v1/database", _fetch("same-site", "no-cors", "empty"), 200),
        ("GET", "/api/v1/database", _fetch("none", "navigate", "document"), 200),
        ("GET", "/", _fetch("cross-site", "navigate", "document"), 200),  # the main app's link
        ("GET", "/api/v1/database", _fetch("cross-site", "no-cors", "empty"), 403),
        ("GET", "/api/v1/database", _fetch("cross-site", "cors", "empty"), 403),
        ("GET", "/api/v1/backup", _fetch("cross-site", "no-cors", "image"), 403),
        ("GET", "/", _fetch("cross-site", "navigate", "iframe"), 403),
        ("HEAD", "/api/v1/backup", _fetch("cross-site", "navigate", "document"), 403),
        ("GET", "/healthz", _fetch("cross-site", "no-cors", "image"), 200),  # probes are public
    ],
)
def test_cross_site_requests(rich_service, method, path, headers, status):
    reply = rich_service.request(method, path, {**headers, **rich_service.auth()})
    assert reply.status == status
    if status == 403 and method == "GET":
        body = reply.json()
        assert body["error"] == "Forbidden" and "another site" in body["message"]


@pytest.mark.parametrize(
    "site,mode,dest,status",
    [
        ("same-origin", "navigate", "iframe", 200),  # the dashboard's download frame
        ("none", "navigate", "document", 200),  # a typed URL or a bookmark
        ("same-site", "navigate", "document", 403),  # another port, a sibling subdomain
        ("same-site", "no-cors", "image", 403),
        ("cross-site", "navigate", "document", 403),  # another site's link, form, redirect or window.open
        ("cross-site", "navigate", "empty", 403),  # <a download>
    ],
)
def test_only_the_dashboard_or_the_user_start_a_dump(rich_service, site, mode, dest, status):
    """The contract's rule for GET /api/v1/backup, decided before credentials."""
    reply = rich_service.request("GET", "/api/v1/backup", {**_fetch(site, mode, dest), **rich_service.auth()})
    assert reply.status == status
    if status == 403:
        assert "another site or page" in reply.json()["message"]
        page = rich_service.request("GET", "/api/v1/backup", {**_fetch(site, mode, dest), "Accept": "text/html"})
        assert page.status == 403 and page.headers["Content-Type"].startswith("text/html")
        assert b'<a href="/">Back to the dashboard</a>' in page.body


def test_a_steered_request_with_a_bad_link_counts_nothing(start_service, rich_db):
    """Another page sending made-up links must not lock the admin's address out; a valid link passes."""
    from backup_svc.links import signed_backup_url

    secret = "steer-link-secret-" + "s" * 16
    service = start_service(DATABASE_URL=rich_db, LINK_SECRET=secret, AUTH_FAILURES_PER_MINUTE="1")
    steered = _fetch("cross-site", "navigate", "document")
    for _ in range(3):
        reply = service.request("GET", "/api/v1/backup?expires=9999999999&sig=" + "0" * 64, steered)
        assert reply.status == 403 and "another site or page" in reply.json()["message"]
    link = signed_backup_url(service.base_url, secret, 60)
    assert service.request("GET", link[len(service.base_url) :], steered).status == 200  # the main app's way in
    assert service.request("GET", "/api/v1/database", service.auth()).status == 200  # nothing was counted


def test_cross_site_refusal_comes_before_credentials(start_service, rich_db):
    """A page on another site cannot make the browser guess passwords: no credential is even looked at."""
    service = start_service(DATABASE_URL=rich_db, AUTH_FAILURES_PER_MINUTE="1")
    for _ in range(3):
        headers = {**_fetch("cross-site", "no-cors", "empty"), **bearer("guess-guess-guess")}
        assert service.request("GET", "/api/v1/database", headers).status == 403
    assert service.request("GET", "/api/v1/database", service.auth()).status == 200  # nothing was counted


# -- headers --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,path,credentials,status",
    [
        ("GET", "/", True, 200),
        ("GET", "/", False, 401),
        ("GET", "/api/v1/database", True, 200),
        ("GET", "/api/v1/audit", True, 200),
        ("HEAD", "/api/v1/backup", True, 200),
        ("GET", "/api/v1/nothing", True, 404),
        ("GET", "/healthz", False, 200),
    ],
)
def test_security_headers_on_every_response(rich_service, method, path, credentials, status):
    reply = rich_service.request(method, path, rich_service.auth() if credentials else {"Accept": "text/html"})

    assert reply.status == status
    csp = reply.headers["Content-Security-Policy"]
    for part in PAGE_CSP_PARTS:
        assert part in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in reply.headers  # plain http, no trusted proxy


class InlineCode(HTMLParser):
    """What a page's HTML carries that a CSP without 'unsafe-inline' blocks: a <script> without src or
    with a body, a <style> element, a style="…" or on…="…" attribute, a javascript: URL."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.found.append(f"<script> without src: {attrs}")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"<{tag} {name}=…>" for name in names if name == "style" or name.startswith("on")]
        self.found += [f"<{tag} {n}={v!r}>" for n, v in names.items() if v.strip().lower().startswith("javascript:")]

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append(f"script body: {data.strip()[:60]!r}")


def test_pages_carry_no_inline_script_or_style(rich_service):
    """The CSP forbids inline code, so a page that had some would break: none may slip in. Every page:
    the dashboard, each of docs/*.md rendered (markdown may carry raw HTML), and the HTML error pages."""
    html_auth = {**rich_service.auth(), "Accept": "text/html"}
    pages = [
        ("/", rich_service.auth(), 200),
        ("/", {"Accept": "text/html"}, 401),
        ("/docs/no-such-doc", html_auth, 404),
    ]
    pages += [(f"/docs/{doc.stem}", rich_service.auth(), 200) for doc in sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) > 10
    for path, headers, status in pages:
        reply = rich_service.request("GET", path, headers)
        html = reply.body.decode().lower()
        assert reply.status == status and "<html" in html, (path, reply.status)
        assert "<script>" not in html and " style=" not in html and "<style" not in html
        assert "onclick=" not in html and "onload=" not in html
        assert InlineCode(reply.body.decode()).found == [], path


@pytest.mark.parametrize(
    "hops,proto,hsts",
    [
        ("1", "https", True),
        ("1", "http", False),
        ("0", "https", False),  # not behind a proxy: the header is the client's word, worth nothing
    ],
)
def test_hsts_only_when_a_trusted_proxy_says_https(start_service, rich_db, hops, proto, hsts):
    service = start_service(DATABASE_URL=rich_db, TRUSTED_PROXY_HOPS=hops)
    headers = {"X-Forwarded-Proto": proto, "X-Forwarded-For": "203.0.113.5"}
    for path in ("/healthz", "/"):
        reply = service.request("GET", path, {**headers, **service.auth()})
        assert reply.status == 200
        assert ("Strict-Transport-Security" in reply.headers) is hsts
        if hsts:
            assert reply.headers["Strict-Transport-Security"].startswith("max-age=")


def test_gunicorn_itself_does_not_trust_forwarded_proto_from_loopback(start_service, rich_db):
    """gunicorn trusts X-Forwarded-Proto from ::1 by default; the service turns that off (proxy.py decides)."""
    service = start_service(DATABASE_URL=rich_db)
    conn = http.client.HTTPConnection("::1", service.port, timeout=10)
    try:
        conn.request("GET", "/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"})
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    assert reply.status == 200  # not gunicorn's 400 for disagreeing scheme headers
    assert reply.getheader("Strict-Transport-Security") is None


# -- audit ----------------------------------------------------------------------------------------
def test_refusals_at_the_door_do_not_evict_real_backups_from_the_audit(start_service, rich_db):
    """Before, 60 unauthenticated requests pushed every real backup out of the in-memory list (50)."""
    service = start_service(DATABASE_URL=rich_db)
    assert service.request("GET", "/api/v1/backup?progress_id=kept-backup-01", service.auth()).status == 200
    for _ in range(60):
        assert service.request("GET", "/api/v1/backup").status == 401
    entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    assert [e["id"] for e in entries if e["outcome"] == "ok"] == ["kept-backup-01"]
    denied = [e for e in entries if e["outcome"] == "denied"]
    assert 1 <= len(denied) <= 2 and sum(e["count"] for e in denied) == 60  # 2 if a minute turned meanwhile
