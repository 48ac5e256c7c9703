"""The security building blocks on their own: throttle (with a hand-moved clock), Fetch Metadata, settings."""

from __future__ import annotations

import pytest

from backup_svc.config import ConfigError, Settings
from backup_svc.web.audit import AuditTrail
from backup_svc.web.security import cross_site_refusal
from backup_svc.clientaddress import address_key
from backup_svc.web.throttle import AuthThrottle


class Clock:
    """A clock the test moves by hand, so the one-minute window can be crossed without waiting."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_the_limit_and_says_how_long():
    clock = Clock()
    throttle = AuthThrottle(limit=3, clock=clock)
    for _ in range(2):
        throttle.failed("1.2.3.4")
        assert throttle.retry_after("1.2.3.4") is None
    throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == 60
    clock.now += 45.2
    assert throttle.retry_after("1.2.3.4") == 15  # rounded up: never "try again in 0 s"


def test_throttle_resets_when_the_window_has_passed():
    clock = Clock()
    throttle = AuthThrottle(limit=2, clock=clock)
    throttle.failed("1.2.3.4")
    throttle.failed("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") is not None
    clock.now += 59.9
    assert throttle.retry_after("1.2.3.4") is not None
    clock.now += 0.1
    assert throttle.retry_after("1.2.3.4") is None
    throttle.failed("1.2.3.4")  # a fresh window: one failure is not over the limit
    assert throttle.retry_after("1.2.3.4") is None


def test_throttle_failures_in_an_old_window_do_not_add_up():
    clock = Clock()
    throttle = AuthThrottle(limit=2, clock=clock)
    throttle.failed("a")
    clock.now += 61
    throttle.failed("a")
    assert throttle.retry_after("a") is None


def test_throttle_keeps_addresses_apart():
    throttle = AuthThrottle(limit=1, clock=Clock())
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is not None
    assert throttle.retry_after("10.0.0.2") is None


def test_throttle_table_is_bounded_and_forgets_the_oldest():
    clock = Clock()
    throttle = AuthThrottle(limit=1, max_tracked=100, clock=clock)
    for i in range(1000):
        clock.now += 0.001
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.tracked() == 100
    assert throttle.retry_after("10.0.3.231") is not None  # the latest (i = 999) is still blocked
    assert throttle.retry_after("10.0.0.0") is None  # the first was forgotten


@pytest.mark.parametrize(
    "address,key",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("not-an-address", "not-an-address"),
        (None, "-"),
    ],
)
def test_address_key_groups_ipv6_by_64(address, key):
    assert address_key(address) == key


# -- Fetch Metadata ---------------------------------------------------------------------------------
def _fetch(site=None, mode=None, dest=None):
    headers = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize(
    "method,headers",
    [
        ("GET", {}),  # curl, scripts, old browsers
        ("HEAD", {}),
        ("GET", _fetch("same-origin", "cors", "empty")),  # the dashboard's own fetch()
        ("GET", _fetch("same-site", "no-cors", "image")),
        ("GET", _fetch("none", "navigate", "document")),  # typed or bookmarked
        ("GET", _fetch("cross-site", "navigate", "document")),  # the main app's link (Chromium 156)
        ("GET", _fetch("cross-site", "navigate", "empty")),  # a navigation that becomes a download
        ("GET", _fetch("Cross-Site", "Navigate", "Document")),
    ],
)
def test_allowed_requests(method, headers):
    assert cross_site_refusal(method, headers) is None


@pytest.mark.parametrize(
    "method,headers",
    [
        ("GET", _fetch("cross-site", "no-cors", "empty")),  # fetch(..., {mode: "no-cors"}) from another site
        ("GET", _fetch("cross-site", "cors", "empty")),
        ("GET", _fetch("cross-site", "no-cors", "image")),  # <img src>
        ("GET", _fetch("cross-site", "navigate", "iframe")),  # <iframe src>
        ("GET", _fetch("cross-site", "nested-navigate", "frame")),
        ("POST", _fetch("cross-site", "navigate", "document")),  # a cross-site form post
        ("HEAD", _fetch("cross-site", "navigate", "document")),
        ("GET", _fetch("cross-site")),  # no mode at all
        ("GET", _fetch("somewhere-else", "no-cors", "empty")),  # an unknown site value is treated as cross-site
    ],
)
def test_refused_requests(method, headers):
    assert "another site" in cross_site_refusal(method, headers)


# -- settings -------------------------------------------------------------------------------------
BASE = {"DATABASE_URL": "postgresql://u:p@h/db", "ADMIN_TOKEN": "t" * 20}


def test_security_settings_defaults():
    settings = Settings.from_env(BASE)
    assert (settings.auth_failures_per_minute, settings.trusted_proxy_hops, settings.link_max_ttl_s) == (10, 0, 600)


@pytest.mark.parametrize(
    "name,value",
    [
        ("AUTH_FAILURES_PER_MINUTE", "0"),
        ("AUTH_FAILURES_PER_MINUTE", "ten"),
        ("TRUSTED_PROXY_HOPS", "-1"),
        ("TRUSTED_PROXY_HOPS", "6"),
        ("TRUSTED_PROXY_HOPS", "yes"),
        ("LINK_MAX_TTL", "0"),
        ("LINK_MAX_TTL", "3601"),
        ("LINK_MAX_TTL", "10m"),
    ],
)
def test_security_settings_are_validated(name, value):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**BASE, name: value})
    assert len(exc.value.problems) == 1 and name in exc.value.problems[0]


def test_audit_trail_keeps_the_latest_newest_first(caplog):
    trail = AuditTrail(keep=3)
    with caplog.at_level("INFO", logger="backup_svc.audit"):
        for n in range(5):
            trail.record(actor="token", client="127.0.0.1", user_agent="t", outcome="ok", started=1e9 + n, gzip_bytes=n)
    assert [entry["bytes"] for entry in trail.recent()] == [4, 3, 2]
    assert len(caplog.records) == 5  # the log keeps every attempt
    assert trail.recent()[0]["time"] == "2001-09-09T01:46:44.000Z"


@pytest.mark.parametrize(
    "spelling,address",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:5555", "203.0.113.7"),
        ("[::ffff:203.0.113.7]:443", "203.0.113.7"),
        ("203.000.113.007", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:DB8:0:0::1]:8080", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", "unknown"),
    ],
)
def test_addresses_have_one_spelling(spelling, address):
    from backup_svc.clientaddress import normalise_address

    assert normalise_address(spelling) == address


@pytest.mark.parametrize(
    "text,label",
    [
        ("203.000.113.007", "203.0.113.7"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("unknown", "invalid"),
        ("A" * 16000, "invalid"),
        ('203.0.113.7" 200 0 0ms "forged', "invalid"),
        ("203.0.113.7\x1b[2J", "invalid"),
        ("", "invalid"),
        (None, None),
    ],
)
def test_a_client_is_written_as_an_address_or_invalid(text, label):
    from backup_svc.clientaddress import client_label

    assert client_label(text) == label


@pytest.mark.parametrize(
    "env,hops",
    [
        ({}, 0),
        ({"RAILWAY_PUBLIC_DOMAIN": "x.up.railway.app"}, 1),
        ({"RAILWAY_PUBLIC_DOMAIN": "x.up.railway.app", "TRUSTED_PROXY_HOPS": "0"}, 0),
        ({"RAILWAY_PUBLIC_DOMAIN": "x.up.railway.app", "TRUSTED_PROXY_HOPS": "2"}, 2),
        ({"RAILWAY_PRIVATE_DOMAIN": "backups.railway.internal"}, 0),  # private network only: no edge
    ],
)
def test_trusted_proxy_hops_default_follows_railway_edge(env, hops):
    from backup_svc.config import Settings

    settings = Settings.from_env({"DATABASE_URL": "postgresql://u:p@h/d", "ADMIN_TOKEN": "t" * 20, **env})
    assert settings.trusted_proxy_hops == hops


def test_refusals_at_the_door_cannot_push_real_attempts_out():
    import time

    trail = AuditTrail(keep=5)
    now = time.time()
    trail.record(actor="token", client="198.51.100.1", user_agent="curl", outcome="ok", started=now - 1, status=200)
    for n in range(60):  # one address, then many: neither evicts the backup
        trail.record(
            actor=None,
            client="203.0.113.9" if n < 30 else f"203.0.113.{n}",
            user_agent=None,
            outcome="denied",
            started=now,
            status=401,
            error="Authentication required",
        )
    recent = trail.recent()
    assert [e["outcome"] for e in recent].count("ok") == 1
    denied = [e for e in recent if e["outcome"] == "denied"]
    assert len(denied) == 5
    # The 30 from .9 were pushed out by later clients; past 5 clients a minute, those are counted together.
    assert sum(e["count"] for e in denied) == 30

    trail = AuditTrail(keep=5)
    for _ in range(60):
        trail.record(actor=None, client="203.0.113.9", user_agent=None, outcome="denied", started=now, status=401)
    assert [(e["client"], e["count"]) for e in trail.recent()] == [("203.0.113.9", 60)]


def test_refusals_are_counted_per_ipv6_64_and_capped_per_minute():
    """12 addresses of one /64, or many IPv4 addresses x 3 statuses, fill no more than a few entries."""
    import time

    from backup_svc.web.audit import DENIED_CLIENTS_PER_MINUTE, OTHERS

    trail = AuditTrail()
    minute = (time.time() // 60) * 60 + 5
    for n in range(12):
        trail.record(
            actor=None, client=f"2001:db8:1:2::{n + 1:x}", user_agent=None, outcome="denied", started=minute, status=401
        )
    denied = trail.recent()
    assert [(e["client"], e["count"]) for e in denied] == [("2001:db8:1:2::/64", 12)]
    for n in range(40):
        for status in (401, 403, 429):
            trail.record(
                actor=None,
                client=f"203.0.113.{n}",
                user_agent=None,
                outcome="denied",
                started=minute + 1,
                status=status,
            )
    denied = trail.recent()
    clients = {e["client"] for e in denied}
    assert len(clients) == DENIED_CLIENTS_PER_MINUTE + 1 and OTHERS in clients
    assert len(denied) <= 1 + (DENIED_CLIENTS_PER_MINUTE - 1) * 3 + 1
    assert sum(e["count"] for e in denied) == 12 + 40 * 3


def test_the_dashboard_always_shows_real_attempts():
    """Before, ten refusals at the door newer than the last backup pushed it off the dashboard's list."""
    import time

    from backup_svc.history.event import HistoryEvent
    from backup_svc.history.summary import recent_attempts
    from backup_svc.timefmt import iso_utc

    now = time.time()
    attempts = [
        HistoryEvent(
            body={
                "kind": "audit",
                "time": iso_utc(now - 100 + n, "milliseconds"),
                "process": "serve",
                "data": {"outcome": "ok", "id": f"real-{n}", "time": iso_utc(now - 100 + n, "milliseconds")},
            },
            data=b"",
            sha256="",
            name="",
        )
        for n in range(8)
    ]
    trail = AuditTrail()
    for n in range(4):  # four minutes of refusals from many clients, all newer
        for client in range(10):
            trail.record(
                actor=None,
                client=f"203.0.113.{client}",
                user_agent=None,
                outcome="denied",
                started=now + 60 * n,
                status=401,
            )
    shown = recent_attempts(list(reversed(attempts)), trail.recent(), 10)
    assert len(shown) == 10
    assert [e["id"] for e in shown if e["outcome"] == "ok"] == [f"real-{n}" for n in (7, 6, 5, 4, 3)]


def test_refusal_log_lines_are_capped_per_minute_and_summed_up_after_it(caplog):
    """A flood of 1,000 refusals in a minute writes 60 lines and then one summary per client and status."""
    import json
    import logging
    import time

    from backup_svc.web.audit import DENIED_LINES_PER_MINUTE

    trail = AuditTrail()
    minute = (time.time() // 60) * 60 - 120  # a minute that is over
    with caplog.at_level(logging.INFO, logger="backup_svc.audit"):
        for n in range(1000):
            trail.record(
                actor=None,
                client="203.0.113.9" if n % 2 else "2001:db8::1",
                user_agent=None,
                outcome="denied",
                started=minute + n / 100,
                status=401,
            )
        trail.record(
            actor="token", client="198.51.100.1", user_agent="curl", outcome="ok", started=minute + 15, status=200
        )
        during = [json.loads(r.getMessage()) for r in caplog.records]
        trail.record(
            actor=None, client="203.0.113.9", user_agent=None, outcome="denied", started=minute + 60, status=401
        )  # the next minute: the last one's summaries are logged
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert len(during) == DENIED_LINES_PER_MINUTE + 1  # the real attempt is always logged
    assert [e["outcome"] for e in during].count("ok") == 1
    summaries = [e for e in lines if e["event"] == "denied_summary"]
    assert sorted((e["client"], e["count"]) for e in summaries) == [("2001:db8::/64", 470), ("203.0.113.9", 470)]
    assert len(lines) == len(during) + 2 + 1
