"""Heartbeat (dead man's switch): GET the URL after a good backup, `<url>/fail` after a failed one.

That is the healthchecks.io convention (Uptime Kuma push monitors and Cronitor take the plain GET):
the monitoring side alarms when pings *stop*, which no message sent from here can do.
"""
from __future__ import annotations

import urllib.request
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
    request = urllib.request.Request(ping_url(url, event.failed), method="GET", headers={"User-Agent": USER_AGENT})
    http_send(request, timeout_s)
