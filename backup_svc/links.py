"""Signed links: `GET /api/v1/backup?expires=<unix>&sig=<hex>`, minted by the main app with LINK_SECRET.

    sig = hex(HMAC-SHA256(key=LINK_SECRET, msg="GET\\n/api/v1/backup\\n<expires>"))   (UTF-8, lowercase hex)

The signature covers the method, the path and the expiry, so a link cannot be moved to another
endpoint or kept alive longer; nothing else in the query string is signed or read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Mapping, Sequence
from urllib.parse import urlencode

LINK_METHOD = "GET"
LINK_PATH = "/api/v1/backup"
LINK_ACTOR = "signed link"
LINK_PARAMS = ("expires", "sig")
# A main app whose clock runs a little ahead must still be able to mint links of the full TTL.
CLOCK_SKEW_S = 30

# One spelling per link, the one link_signature and signed_backup_url make: a Unix time without
# leading zeros, lower-case hex. Anything else is malformed, however it would decode.
_EXPIRES = re.compile(r"[1-9][0-9]{0,11}")
_SIG = re.compile(r"[0-9a-f]{64}")


class LinkRefused(Exception):
    """The link cannot be honoured; the message says why, for the person holding it."""


def link_signature(secret: str, method: str, path: str, expires: int) -> str:
    """The hex HMAC-SHA256 of "<method>\\n<path>\\n<expires>" under `secret`."""
    message = f"{method}\n{path}\n{expires}".encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_backup_url(base_url: str, secret: str, ttl_s: int, now: float | None = None) -> str:
    """A link to download one backup, valid for `ttl_s` seconds from `now`."""
    expires = int(time.time() if now is None else now) + ttl_s
    query = urlencode({"expires": expires, "sig": link_signature(secret, LINK_METHOD, LINK_PATH, expires)})
    return f"{base_url.rstrip('/')}{LINK_PATH}?{query}"


def carries_link(args: Mapping[str, object]) -> bool:
    """True when the query string tries to be a signed link."""
    return any(name in args for name in LINK_PARAMS)


def check_link(
    secret: str, max_ttl_s: int, method: str, path: str, params: Mapping[str, Sequence[str]], now: float | None = None
) -> None:
    """Return when the link is good for this request; raise LinkRefused saying why it is not.

    `params` maps each query parameter to all its values (werkzeug's `request.args.to_dict(flat=False)`).
    """
    if method != LINK_METHOD or path != LINK_PATH:
        raise LinkRefused(f"Signed links are valid only for {LINK_METHOD} {LINK_PATH}.")
    expires_values, sig_values = params.get("expires", []), params.get("sig", [])
    # Exactly one of each: with two, different parsers could disagree on which one was signed.
    if (
        len(expires_values) != 1
        or len(sig_values) != 1
        or not _EXPIRES.fullmatch(expires_values[0])
        or not _SIG.fullmatch(sig_values[0])
    ):
        raise LinkRefused(
            "Malformed signed link: it needs exactly one `expires` (Unix time in seconds, no "
            "leading zero) and one `sig` (64 lower-case hex digits)."
        )
    expires = int(expires_values[0])
    expected = link_signature(secret, method, path, expires)
    if not hmac.compare_digest(expected.encode("ascii"), sig_values[0].encode("ascii")):
        raise LinkRefused(
            "The link's signature does not match: it was altered, made for another path, "
            "or signed with another LINK_SECRET."
        )
    now = time.time() if now is None else now
    if now > expires:
        raise LinkRefused(f"The link expired {int(now - expires)} s ago; get a fresh one from the main app.")
    if expires - now > max_ttl_s + CLOCK_SKEW_S:
        raise LinkRefused(
            f"The link is valid for {int(expires - now)} s, longer than LINK_MAX_TTL "
            f"({max_ttl_s} s) allows; links must be short-lived."
        )
