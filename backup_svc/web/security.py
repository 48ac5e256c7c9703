"""Browser-facing defences: refusing cross-site requests (Fetch Metadata) and the security headers."""

from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit

from flask import Flask, Response, request

from backup_svc.web.proxy import arrived_over_https

# Pages load scripts and styles only from this service, never inline: an injected `<script>` or
# `style=` does nothing. The dashboard's assets are served by the service itself.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        # the dashboard downloads through a hidden same-origin iframe (the browser's download manager)
        "frame-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    # Other sites cannot embed our responses as images, scripts and the like (no-cors reads).
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "max-age=31536000"

_TRUSTED_SITES = {"same-origin", "same-site", "none"}  # "none": typed, bookmarked, opened from a mail
# Starting a dump is stricter: a sibling subdomain or another port of the same host is another
# party's page, and a navigation from anywhere else is another site's initiative (see docs/security.md).
_DUMP_SITES = {"same-origin", "none"}
# Downloads through `<a download>` are navigations with destination "empty" (seen in Chromium 156);
# frames are not top-level and are refused (frame-ancestors would blank them anyway).
_TOP_LEVEL_DESTINATIONS = {"document", "empty"}

STEERED_DUMP = (
    "Refused: another site or page started this backup. Start backups from the dashboard "
    "(/ on this service) or with a signed link; links, forms, scripts and frames on other "
    "pages cannot start one."
)
STEERED_REQUEST = (
    "Refused: this request came from another site. Open the link directly or use the "
    "dashboard; scripts, frames and embedded resources on other sites cannot use this service."
)


def steered_dump(headers: Mapping[str, str]) -> bool:
    """True when a browser sent this dump request on another page's initiative.

    The contract's rule: with Fetch Metadata, only `Sec-Fetch-Site: same-origin` (the dashboard) or
    `none` (typed, bookmarked) may start a dump; a valid signed link is judged by the caller. Clients
    that send no Fetch Metadata (curl, scripts, old browsers) are judged by their credentials alone.
    """
    site = headers.get("Sec-Fetch-Site")
    return site is not None and site.strip().lower() not in _DUMP_SITES


def top_level_navigation(method: str, headers: Mapping[str, str]) -> bool:
    """A GET that loads a whole page or a download (a link clicked, a redirect), not a frame or a resource."""
    mode = (headers.get("Sec-Fetch-Mode") or "").lower()
    destination = (headers.get("Sec-Fetch-Dest") or "").lower()
    return method == "GET" and mode == "navigate" and destination in _TOP_LEVEL_DESTINATIONS


def cross_site_refusal(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a request (one that starts no dump) must be refused as coming from another site, or None.

    Browsers send `Sec-Fetch-*`; clients that send none (curl, scripts, old browsers) are not
    browsers being steered by another site and pass. From another site only a top-level GET
    navigation passes (a link to the dashboard), whose response the other site can never read.
    """
    site = headers.get("Sec-Fetch-Site")
    if site is None or site.lower() in _TRUSTED_SITES or top_level_navigation(method, headers):
        return None
    return STEERED_REQUEST


_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def state_change_refusal(method: str, headers: Mapping[str, str], own_origin: str) -> str | None:
    """Why a request that changes something (POST, DELETE and the like) must be refused, or None.

    The one rule for every state-changing request (the stored-backup trigger, cancel, restores…):
    from a browser only the service's own pages may send one. A browser that sends Fetch Metadata
    has compared the origins itself: `Sec-Fetch-Site` must be `same-origin` (not a sibling
    subdomain, not "none"). One that does not (an old browser, or a page on plain http to a
    non-local address) still sends `Origin` with every cross-origin POST: it must be `own_origin`
    (`same_origin`: scheme, host and port). Scripts send neither and are judged by their credentials.
    """
    if method.upper() in _SAFE_METHODS:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site.strip().lower() == "same-origin" else STEERED_CHANGE
    origin = headers.get("Origin")
    if origin is not None and not same_origin(origin, own_origin):
        return STEERED_CHANGE
    return None


STEERED_CHANGE = (
    "Refused: from a browser, only this service's own pages may change anything (Sec-Fetch-Site "
    "and Origin are checked). Use the dashboard; scripts send Authorization: Bearer <ADMIN_TOKEN>."
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, own_origin: str) -> bool:
    """True when the `Origin` header names this service: the same scheme, host and port (RFC 6454).

    `own_origin` is how the request reached the service (`request.host_url`: scheme and Host).
    Case, an explicit default port and `[]` around IPv6 do not matter; `null`, a path or anything
    unparsable never matches.
    """

    def key(url: str):
        parts = urlsplit(url.strip())
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
            return None
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return None
        return parts.scheme, parts.hostname, port

    if origin.strip() == "null" or urlsplit(origin.strip()).path not in ("", "/"):
        return False
    mine = key(own_origin)
    return mine is not None and key(origin) == mine


def add_security_headers(response: Response) -> Response:
    """Set the security headers on every response (a view may set its own values first)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if arrived_over_https():
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if request.endpoint != "static":
        # The one place Cache-Control is set: database facts, audit entries, dumps, error pages and
        # presigned links must not linger in shared or browser caches.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def install_security_headers(app: Flask) -> None:
    """Apply `add_security_headers` to every response the app makes, pages and API alike."""
    app.after_request(add_security_headers)
