"""A client's address as the service writes it: one spelling per address, and never arbitrary text.

Behind a trusted proxy the client's address is whatever the proxy put in `X-Forwarded-For`; on
Railway's private network a caller may send its own. The throttle, the audit trail and the access
log all write the result, so it goes through `client_label` first: an address in one spelling,
or `invalid` — never 16,000 characters, quotes or control bytes from a header.
"""

from __future__ import annotations

import ipaddress
import re

INVALID = "invalid"
# The longest textual address that can be normalised (bracketed IPv6 with a zone and a port) fits.
MAX_ADDRESS_CHARS = 64

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


def client_label(text: str | None) -> str | None:
    """`text` (a peer or `X-Forwarded-For` entry) as written everywhere: a normalised address, or INVALID."""
    if text is None:
        return None
    text = text.strip()
    if len(text) > MAX_ADDRESS_CHARS:
        return INVALID
    label = normalise_address(text)
    try:
        ipaddress.ip_address(label)
    except ValueError:
        return INVALID
    return label


def address_key(address: str | None) -> str:
    """One client, for the throttle and the audit's refusal counts: an IPv4 address, or an IPv6 address's /64.

    One IPv6 subscriber usually gets a whole /64, so counting single IPv6 addresses would let one
    client rotate through 2^64 of them.
    """
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))
