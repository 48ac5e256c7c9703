"""Heartbeat (dead man's switch): GET the URL after a good backup, `<url>/fail` after a failed one.

That is the healthchecks.io convention (Uptime Kuma push monitors and Cronitor take the plain GET):
the monitoring side alarms when pings *stop*, which no message sent from here can do.
"""

from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

from backup_svc.notify.common import Event
from backup_svc.notify.webhook import USER_AGENT, http_send


def ping_url(url: str, failed: bool) -> str:
    """`url` itself on success; `url` + `/fail` on failure (any query string kept at the end)."""
    if not failed:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def send_heartbeat(url: str, event: Event, *, timeout_s: float) -> None:
    """Ping for `event`'s outcome; DeliveryFailed when the monitor cannot be reached."""
    import urllib.request  # when pinging, not with the module (webhook.py says why)

    request = urllib.request.Request(ping_url(url, event.failed), method="GET", headers={"User-Agent": USER_AGENT})
    http_send(request, timeout_s)


# A command that cannot start waits this long at most for the monitor.
SETTINGS_PING_TIMEOUT_S = 10


def ping_settings_failure(env: Mapping[str, str], problems: list[str]) -> bool:
    """The settings are wrong and the command exits 2: ping `<HEARTBEAT_URL>/fail` when that URL is usable
    (a monitor then hears of a misconfigured service before the pings stop). True when it was pinged."""
    from backup_svc.notify.common import BACKUP, FAILED
    from backup_svc.timefmt import utc_now

    raw = (env.get("HEARTBEAT_URL") or "").strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    event = Event(
        kind=BACKUP,
        outcome=FAILED,
        database="",
        finished=utc_now(),
        error=f"the settings are wrong: {problems[0] if problems else 'see the log'}",
    )
    try:
        send_heartbeat(raw, event, timeout_s=SETTINGS_PING_TIMEOUT_S)
    except Exception:  # the settings error is what gets said; a monitor that cannot be reached is secondary
        return False
    return True
