"""Guarantees the docs state that had no test of their own: credentials and link signatures are
compared in constant time, a link may run 30 s past LINK_MAX_TTL for clock skew and not a second
more, and the audit trail keeps at most 256 characters of a User-Agent."""

from __future__ import annotations

import hmac

import pytest
from flask import Flask

from backup_svc.links import CLOCK_SKEW_S, LINK_METHOD, LINK_PATH, LinkRefused, check_link, link_signature
from backup_svc.web import auth
from backup_svc.web.audit import MAX_USER_AGENT_CHARS, request_facts

SECRET = "link-secret-0123456789"
NOW = 1_800_000_000.0


@pytest.fixture()
def compared(monkeypatch):
    """Every call of hmac.compare_digest, recorded (and still answered by the real one)."""
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


def test_credentials_are_compared_in_constant_time(compared):
    """docs/security.md: secrets are compared in constant time (hmac.compare_digest, never ==)."""
    assert auth._same("a-token-of-twenty-chars", "a-token-of-twenty-chars")
    assert not auth._same("a-token-of-twenty-charX", "a-token-of-twenty-chars")
    assert compared == [
        (b"a-token-of-twenty-chars", b"a-token-of-twenty-chars"),
        (b"a-token-of-twenty-charX", b"a-token-of-twenty-chars"),
    ]


def test_link_signatures_are_compared_in_constant_time(compared):
    expires = int(NOW) + 60
    good = link_signature(SECRET, LINK_METHOD, LINK_PATH, expires)
    check_link(SECRET, 600, LINK_METHOD, LINK_PATH, {"expires": [str(expires)], "sig": [good]}, now=NOW)
    assert compared == [(good.encode(), good.encode())]


def _link(ttl_s: int) -> dict[str, list[str]]:
    expires = int(NOW) + ttl_s
    return {"expires": [str(expires)], "sig": [link_signature(SECRET, LINK_METHOD, LINK_PATH, expires)]}


def test_a_link_may_run_30_s_past_link_max_ttl_for_clock_skew_and_no_more():
    """docs/main-app-integration.md: `expires` more than LINK_MAX_TTL (+ 30 s for clock skew) ahead is refused."""
    assert CLOCK_SKEW_S == 30
    check_link(SECRET, 600, LINK_METHOD, LINK_PATH, _link(600 + 30), now=NOW)  # the main app's clock is ahead
    with pytest.raises(LinkRefused, match="longer than LINK_MAX_TTL"):
        check_link(SECRET, 600, LINK_METHOD, LINK_PATH, _link(600 + 31), now=NOW)


def test_the_audit_trail_keeps_at_most_256_characters_of_a_user_agent():
    """docs/security.md: a User-Agent is cut to 256 characters before it is kept."""
    assert MAX_USER_AGENT_CHARS == 256
    app = Flask(__name__)
    agent = "Mozilla/5.0 " + "x" * 1000
    with app.test_request_context(headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        facts = request_facts()
    assert facts == {"client": "192.0.2.7", "user_agent": agent[:256]}
    with app.test_request_context(headers={"User-Agent": "curl/8.5.0"}):
        assert request_facts()["user_agent"] == "curl/8.5.0"
