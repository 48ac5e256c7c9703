"""NOTIFY_WEBHOOK_URL, SMTP_URL, NOTIFY_EMAIL_TO/FROM, NOTIFY_ON, HEARTBEAT_URL, RESTORE_DRILL_URL.

Every problem is one line naming the variable; no value that may hold a secret is ever echoed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import unquote, urlsplit

from backup_svc.notify.common import safe_url
from backup_svc.pg.conninfo import ConnInfo, parse_database_url
from backup_svc.problems import ConfigError


NOTIFY_ON_CHOICES = ("failure", "always")
# Enough of RFC 5322 to catch a typo; the SMTP server has the last word.
_ADDRESS = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpTarget:
    """Where mail goes and how: `starttls` (smtp://, port 587), `tls` (smtps://, 465), or `plain`
    (smtp:// to a loopback host only: the mail never leaves the machine unencrypted)."""

    host: str
    port: int
    security: str  # "starttls", "tls" or "plain"
    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """`smtps://smtp.example.com:465` — no user, no password."""
        scheme = "smtps" if self.security == "tls" else "smtp"
        return f"{scheme}://{self.host}:{self.port} ({self.security})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse SMTP_URL; raise ValueError (without the URL's secrets) saying what is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (expected smtp://user:password@host:587)") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must start with smtp:// (STARTTLS, port 587) or smtps:// (TLS, port 465)")
    host = parts.hostname
    if not host:
        raise ValueError("names no host (expected smtp://user:password@host:587)")
    if parts.path.strip("/") or parts.query:
        raise ValueError("must be just smtp[s]://user:password@host:port, with no path or query")
    if parts.scheme == "smtps":
        security, default_port = "tls", 465
    elif is_loopback(host):
        security, default_port = "plain", 25
    else:
        security, default_port = "starttls", 587
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password and not username:
        raise ValueError("has a password but no user name")
    return SmtpTarget(host=host, port=port or default_port, security=security, username=username, password=password)


def _http_url(name: str, raw: str, problems: list[str]) -> str | None:
    try:
        parts = urlsplit(raw)
        parts.port
    except ValueError:
        problems.append(f"{name} is not a valid URL")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{name} must be an http:// or https:// URL with a host")
        return None
    return raw


def _addresses(name: str, raw: str, problems: list[str]) -> list[str]:
    addresses = [a.strip() for a in raw.split(",") if a.strip()]
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad:
        problems.append(f"{name} must be comma-separated e-mail addresses; not one: {bad[0]!r}")
    return addresses


def same_database(a: ConnInfo, b: ConnInfo) -> bool:
    """True when both name the same database on the same server (loopback names count as one host)."""

    def server(conn: ConnInfo) -> tuple[str, int]:
        host = conn.host.lower().strip("[]")
        return ("loopback" if is_loopback(host) else host), conn.port or 5432

    return server(a) == server(b) and a.dbname == b.dbname


@dataclass(frozen=True)
class NotifySettings:
    """Which channels are configured, when they speak, and where drills may restore."""

    webhook_url: str | None = field(default=None, repr=False)
    smtp: SmtpTarget | None = None
    email_to: list[str] = field(default_factory=list)
    email_from: str | None = None
    notify_on: str = "failure"
    heartbeat_url: str | None = field(default=None, repr=False)
    drill: ConnInfo | None = None
    drill_url: str | None = field(default=None, repr=False)
    drill_timeout_s: int | None = None  # RESTORE_DRILL_TIMEOUT; None: sized from the backup (drillbounds.py)

    @property
    def any_channel(self) -> bool:
        return bool(self.webhook_url or self.smtp or self.heartbeat_url)

    def secrets(self) -> tuple[str, ...]:
        """Every configured value that must never appear in a log or a message."""
        values = [
            self.webhook_url,
            self.heartbeat_url,
            self.smtp.password if self.smtp else None,
            self.drill.password if self.drill else None,
        ]
        for url in (self.webhook_url, self.heartbeat_url):
            if url:
                path = urlsplit(url).path.strip("/")
                if len(path) >= 8:  # a path that short is a route (/hook), not a token
                    values.append(path)
        return tuple(v for v in values if v)

    def describe(self) -> list[str]:
        """One line per configured channel, for `check` and the dashboard; no secrets."""
        lines = []
        if self.smtp:
            lines.append(f"email: {self.smtp.describe()} from {self.email_from} to {', '.join(self.email_to)}")
        if self.webhook_url:
            lines.append(f"webhook: {safe_url(self.webhook_url)}")
        if self.heartbeat_url:
            lines.append(f"heartbeat: {safe_url(self.heartbeat_url)}")
        if lines:
            pings = " (heartbeat pings every outcome)" if self.heartbeat_url else ""
            lines.append(f"notify on: {self.notify_on}{pings}")
        if self.drill:
            lines.append(f"restore drills: scratch databases on {self.drill.host}:{self.drill.port or 5432}")
        return lines

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, source: ConnInfo | None = None) -> "NotifySettings":
        """Read the notification settings; ConfigError lists every problem, one line each."""
        problems: list[str] = []
        settings = notify_settings(os.environ if env is None else env, problems, source=source)
        if problems:
            raise ConfigError(problems)
        return settings


def _parsed(name: str, raw: str, parse, problems: list[str]):
    """`parse(raw)`, or None when `raw` is empty or invalid (then its problem is added, naming `name`)."""
    if not raw:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        problems.append(f"{name} {exc}")
        return None


def notify_settings(env: Mapping[str, str], problems: list[str], *, source: ConnInfo | None = None) -> NotifySettings:
    """The notification settings from `env`; each problem is appended to `problems` as one line.

    With `source` (the backed-up database), a RESTORE_DRILL_URL that points at it is refused.
    """

    def get(name: str) -> str:
        return env.get(name, "").strip()

    webhook = (
        _http_url("NOTIFY_WEBHOOK_URL", get("NOTIFY_WEBHOOK_URL"), problems) if get("NOTIFY_WEBHOOK_URL") else None
    )
    heartbeat = _http_url("HEARTBEAT_URL", get("HEARTBEAT_URL"), problems) if get("HEARTBEAT_URL") else None

    smtp = _parsed("SMTP_URL", get("SMTP_URL"), parse_smtp_url, problems)
    email_to = _addresses("NOTIFY_EMAIL_TO", get("NOTIFY_EMAIL_TO"), problems)
    email_from = get("NOTIFY_EMAIL_FROM") or None
    if email_from and not _ADDRESS.match(email_from):
        problems.append("NOTIFY_EMAIL_FROM must be one e-mail address")
    if get("SMTP_URL"):
        if not email_to:
            problems.append("NOTIFY_EMAIL_TO is not set: SMTP_URL needs someone to mail")
        if not email_from:
            if smtp and smtp.username and _ADDRESS.match(smtp.username):
                email_from = smtp.username  # Gmail and most providers send as the login anyway
            else:
                problems.append("NOTIFY_EMAIL_FROM is not set (e.g. backups@example.com)")
    elif email_to or email_from:
        problems.append("NOTIFY_EMAIL_TO / NOTIFY_EMAIL_FROM are set but SMTP_URL is not: no mail can be sent")

    notify_on = get("NOTIFY_ON").lower() or "failure"
    if notify_on not in NOTIFY_ON_CHOICES:
        problems.append(f"NOTIFY_ON must be 'failure' or 'always', got {get('NOTIFY_ON')!r}")
        notify_on = "failure"

    drill = _parsed("RESTORE_DRILL_URL", get("RESTORE_DRILL_URL"), parse_database_url, problems)
    if drill and source and same_database(drill, source):
        problems.append(
            "RESTORE_DRILL_URL points at the backed-up database (DATABASE_URL): drills need "
            "a scratch server or database they may overwrite, never the source"
        )
        drill = None

    drill_timeout = None
    if get("RESTORE_DRILL_TIMEOUT"):
        text = get("RESTORE_DRILL_TIMEOUT")
        if not text.isdigit() or not 1 <= int(text) <= 86400:
            problems.append(f"RESTORE_DRILL_TIMEOUT must be a whole number of seconds from 1 to 86400, got {text!r}")
        else:
            drill_timeout = int(text)

    return NotifySettings(
        webhook_url=webhook,
        smtp=smtp,
        email_to=email_to,
        email_from=email_from,
        notify_on=notify_on,
        heartbeat_url=heartbeat,
        drill=drill,
        drill_url=get("RESTORE_DRILL_URL") or None,
        drill_timeout_s=drill_timeout,
    )
