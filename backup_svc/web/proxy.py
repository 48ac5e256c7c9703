"""Who the client is and how it connected, trusting a reverse proxy's headers only as far as configured.

Behind Railway's edge the TCP peer is the proxy; the client's address is the last entry the proxy
appended to `X-Forwarded-For` and its scheme is in `X-Forwarded-Proto`. With TRUSTED_PROXY_HOPS=0
(the default: clients connect directly) those headers are whatever the client chose to send, so
they are ignored. Everything that needs the client's address (throttle, audit, logs) asks
`client_address()`, so there is one answer per request.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from backup_svc.clientaddress import client_label


def trust_proxy_headers(app: Flask, hops: int) -> None:
    """Take the client address and scheme from the last `hops` proxies' headers (none when 0)."""
    if hops > 0:
        # Only For and Proto: the service builds no URLs from Host or a prefix, so nothing else
        # a proxy might send is worth trusting.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)


def client_address() -> str | None:
    """The client's address: the peer, or the trusted proxy's `X-Forwarded-For` entry, in one spelling;
    `invalid` when that entry is no address (see `client_label`: the access log writes the same)."""
    return client_label(request.remote_addr)


def arrived_over_https() -> bool:
    """True when the client used https: to us directly, or to the trusted proxy in front of us."""
    return request.scheme == "https"
