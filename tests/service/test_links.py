"""Signed links against the real gunicorn: valid, expired, too far ahead, tampered, elsewhere; `sign-url`."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from backup_svc.links import LinkRefused, check_link, link_signature, signed_backup_url
from tests.databases import restore, snapshot
from tests.http_client import gzip_is_valid
from tests.service_process import LINK_MAX_TTL, LINK_SECRET, wait_idle

SECRET, MAX_TTL = LINK_SECRET, LINK_MAX_TTL


def sign_url(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m backup_svc sign-url ARGS` in an empty folder (no .env)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LINK_", "PUBLIC_URL", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "backup_svc", "sign-url", *args],
        env={**clean, **(env or {})},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _link(expires: int, secret: str = SECRET, method: str = "GET", path: str = "/api/v1/backup") -> str:
    return f"/api/v1/backup?expires={expires}&sig={link_signature(secret, method, path, expires)}"


# -- the format, without a server -----------------------------------------------------------------
def test_signature_is_hmac_sha256_of_method_path_expiry():
    expected = hmac.new(b"k" * 16, b"GET\n/api/v1/backup\n1700000000", hashlib.sha256).hexdigest()
    assert link_signature("k" * 16, "GET", "/api/v1/backup", 1700000000) == expected


def test_signed_backup_url_round_trips():
    url = signed_backup_url("https://backup.example.com/", SECRET, 120, now=1_700_000_000)
    assert url.startswith("https://backup.example.com/api/v1/backup?expires=1700000120&sig=")
    params = parse_qs(urlsplit(url).query)
    check_link(SECRET, MAX_TTL, "GET", "/api/v1/backup", params, now=1_700_000_000)
    with pytest.raises(LinkRefused, match="expired"):
        check_link(SECRET, MAX_TTL, "GET", "/api/v1/backup", params, now=1_700_000_121)


# -- the service ----------------------------------------------------------------------------------
def test_valid_link_downloads_a_backup_that_restores(link_service, pg_cluster, tmp_path):
    made = sign_url(
        "--ttl",
        "120",
        "--base-url",
        link_service.base_url + "/",
        env={"LINK_SECRET": SECRET, "LINK_MAX_TTL": str(MAX_TTL)},
    )
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    assert url.startswith(link_service.base_url + "/api/v1/backup?expires=")

    wait_idle(link_service)
    reply = link_service.request("GET", _path_and_query(url))  # no other credential

    assert reply.status == 200 and reply.complete
    assert reply.headers["Content-Type"] == "application/gzip"
    assert gzip_is_valid(reply.body)
    backup = tmp_path / "link.sql.gz"
    backup.write_bytes(reply.body)
    restore(pg_cluster, backup, "rich_restored_link")
    assert snapshot(pg_cluster, "rich_restored_link") == snapshot(pg_cluster, "rich")


def test_link_can_be_used_until_it_expires(link_service):
    link = _link(int(time.time()) + 60)
    for _ in range(2):
        wait_idle(link_service)
        assert link_service.request("GET", link).status == 200


def _refused(reply, phrase: str):
    assert reply.status == 403
    body = reply.json()
    assert body["error"] == "Forbidden"
    assert phrase in body["message"]


def test_expired_link_is_refused(link_service):
    _refused(link_service.request("GET", _link(int(time.time()) - 5)), "expired")


def test_link_too_far_ahead_is_refused(link_service):
    _refused(link_service.request("GET", _link(int(time.time()) + MAX_TTL + 120)), "LINK_MAX_TTL")


def test_link_with_altered_signature_is_refused(link_service):
    link = _link(int(time.time()) + 60)
    last = link[-1]
    _refused(link_service.request("GET", link[:-1] + ("0" if last != "0" else "1")), "signature does not match")


def test_link_with_altered_expiry_is_refused(link_service):
    expires = int(time.time()) + 60
    link = _link(expires).replace(f"expires={expires}", f"expires={expires + 30}")
    _refused(link_service.request("GET", link), "signature does not match")


def test_link_signed_with_another_secret_is_refused(link_service):
    _refused(
        link_service.request("GET", _link(int(time.time()) + 60, secret="another-secret-entirely")),
        "signature does not match",
    )


@pytest.mark.parametrize(
    "method,path", [("GET", "/api/v1/database"), ("GET", "/"), ("GET", "/api/v1/audit"), ("HEAD", "/api/v1/backup")]
)
def test_link_used_elsewhere_is_refused(link_service, method, path):
    query = _link(int(time.time()) + 60).split("?", 1)[1]
    reply = link_service.request(method, f"{path}?{query}")
    assert reply.status == 403
    if method == "GET":
        _refused(reply, "valid only for GET /api/v1/backup")


def test_link_signed_for_another_path_is_refused(link_service):
    expires = int(time.time()) + 60
    sig = link_signature(SECRET, "GET", "/api/v1/database", expires)
    _refused(link_service.request("GET", f"/api/v1/database?expires={expires}&sig={sig}"), "valid only for")


@pytest.mark.parametrize(
    "query",
    [
        "expires=&sig=",
        "sig=" + "0" * 64,
        "expires=1700000000",
        "expires=soon&sig=" + "0" * 64,
        "expires=1700000000&sig=xyz",
        "expires=-1&sig=" + "0" * 64,
        "expires=1700000000&expires=1700000001&sig=" + "0" * 64,
        "expires=1700000000&sig=" + "0" * 64 + "&sig=" + "1" * 64,
        "expires=" + "9" * 40 + "&sig=" + "0" * 64,
    ],
)
def test_malformed_link_is_refused(link_service, query):
    _refused(link_service.request("GET", f"/api/v1/backup?{query}"), "Malformed signed link")


@pytest.mark.parametrize("spelling", ["leading zero", "upper-case sig", "mixed-case sig"])
def test_only_the_canonical_form_of_a_valid_link_is_accepted(link_service, spelling):
    """The signature is right in every spelling below; only the form `signed_backup_url` makes passes."""
    expires = int(time.time()) + 60
    sig = link_signature(SECRET, "GET", "/api/v1/backup", expires)
    query = {
        "leading zero": f"expires=0{expires}&sig={sig}",
        "upper-case sig": f"expires={expires}&sig={sig.upper()}",
        "mixed-case sig": f"expires={expires}&sig={sig[:32].upper()}{sig[32:]}",
    }[spelling]
    _refused(link_service.request("GET", f"/api/v1/backup?{query}"), "Malformed signed link")
    assert link_service.request("GET", f"/api/v1/backup?expires={expires}&sig={sig}").status == 200


def test_a_link_is_judged_alone_even_beside_good_credentials(link_service):
    """A request that carries a link stands or falls by it: a bad link is not rescued by a token."""
    reply = link_service.request("GET", f"/api/v1/backup?expires=1&sig={'0' * 64}", link_service.auth())
    _refused(reply, "signature does not match")


def test_links_are_off_without_link_secret(rich_service):
    reply = rich_service.request("GET", _link(int(time.time()) + 60))
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="backup_svc"'


def test_refused_links_count_as_failed_logins(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, LINK_SECRET=SECRET, AUTH_FAILURES_PER_MINUTE="2")
    for _ in range(2):
        assert service.request("GET", f"/api/v1/backup?expires=1&sig={'0' * 64}").status == 403
    assert service.request("GET", _link(int(time.time()) + 60)).status == 429


# -- sign-url -------------------------------------------------------------------------------------
def test_sign_url_takes_the_base_url_from_public_url():
    made = sign_url("--ttl", "30", env={"LINK_SECRET": SECRET, "PUBLIC_URL": "https://backup.example.com"})
    assert made.returncode == 0, made.stderr
    params = parse_qs(urlsplit(made.stdout.strip()).query)
    check_link(SECRET, 600, "GET", "/api/v1/backup", params)
    assert int(params["expires"][0]) - time.time() <= 31


def test_sign_url_without_a_base_url_prints_a_relative_link_and_a_hint():
    made = sign_url("--ttl", "30", env={"LINK_SECRET": SECRET})
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith("/api/v1/backup?expires=")
    check_link(SECRET, 600, "GET", "/api/v1/backup", parse_qs(urlsplit(link).query))
    assert "no --base-url and no PUBLIC_URL" in made.stderr and "--base-url https://<host>" in made.stderr


@pytest.mark.parametrize(
    "args,env,problem",
    [
        (["--base-url", "https://b.example"], {}, "LINK_SECRET is not set"),
        (["--base-url", "backup.example.com"], {"LINK_SECRET": SECRET}, "must look like https://"),
        (["--ttl", "601", "--base-url", "https://b.example"], {"LINK_SECRET": SECRET}, "LINK_MAX_TTL (600)"),
        (["--ttl", "0", "--base-url", "https://b.example"], {"LINK_SECRET": SECRET}, "--ttl"),
        (["--base-url", "https://b.example"], {"LINK_SECRET": "short"}, "LINK_SECRET must be at least 16"),
    ],
)
def test_sign_url_refuses_with_a_clear_line(args, env, problem):
    made = sign_url(*args, env=env)
    assert made.returncode != 0
    assert problem in made.stderr
    assert made.stdout == "" and "Traceback" not in made.stderr
