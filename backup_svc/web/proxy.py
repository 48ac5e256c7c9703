"""Who the client is and how it connected, trusting a reverse proxy's headers only as far as configured.

Behind Railway's edge the TCP peer is the proxy; the client's address is the last entry the proxy
appended to `X-Forwarded-For` and its scheme is in `X-Forwarded-Proto`. With TRUSTED_PROXY_HOPS=0
(the default: clients connect directly) those headers are whatever the client chose to send, so
they are ignored. Everything that needs the client's address (throttle, audit, logs) asks
`client_address()`, so there is one answer per request.
"""
from __future__ import annotations

import ipaddress
import re

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

MAX_ADDRESS_CHARS = 64  # an IPv6 address with a zone fits; anything longer is not an address


def trust_proxy_headers(app: Flask, hops: int) -> None:
    """Take the client address and scheme from the last `hops` proxies' headers (none when 0)."""
    if hops > 0:
        # Only For and Proto: the service builds no URLs from Host or a prefix, so nothing else
        # a proxy might send is worth trusting.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)


def client_address() -> str | None:
    """The client's address: the peer, or the trusted proxy's `X-Forwarded-For` entry, in one spelling.

    An over-long value (only possible from a misconfigured proxy) is cut so it cannot bloat logs
    and tables.
    """
    address = request.remote_addr
    return normalise_address(address)[:MAX_ADDRESS_CHARS] if address else address


_IPV4_WITH_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_BRACKETED = re.compile(r"\[([^\]]+)\](?::\d{1,5})?")


def normalise_address(text: str) -> str:
    """One spelling per address, so the throttle, the audit and the log count a client once.

    `::ffff:1.2.3.4` (the dual-stack socket's IPv4), `[…]` and `[…]:port`, `1.2.3.4:port`,
    `001.002.003.004` and IPv6 written in any of its forms become `1.2.3.4` or the compressed
    IPv6 form; an IPv6 zone (`%eth0`) is dropped. Anything that is not an address is returned as is.
    """
    text = text.strip()
    match = _BRACKETED.fullmatch(text) or _IPV4_WITH_PORT.fullmatch(text)
    if match:
        text = match.group(1)
    text = text.split("%", 1)[0]
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        text = ".".join(str(int(p)) for p in parts)  # leading zeros: decimal, as every current parser reads them
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def arrived_over_https() -> bool:
    """True when the client used https: to us directly, or to the trusted proxy in front of us."""
    return request.scheme == "https"
