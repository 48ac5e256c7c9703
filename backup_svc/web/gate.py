"""What every protected request passes before its credentials are looked at.

In order: refuse requests steered by another site (403), refuse addresses that failed to
authenticate too often (429), then judge a signed link if the request carries one (403 when bad).
`auth.login_required` runs this, so every protected view, present and future, gets all of it.
"""
from __future__ import annotations

import time

from flask import request

from backup_svc.links import LINK_ACTOR, LinkRefused, carries_link, check_link
from backup_svc.web.errors import api_abort
from backup_svc.web.proxy import client_address
from backup_svc.web.security import cross_site_refusal
from backup_svc.web.state import service
from backup_svc.web.throttle import address_key


def check_before_credentials() -> str | None:
    """Abort with 403/429 when the request may not proceed; "signed link" when a valid link admits it.

    None means: go on and check the `Authorization` header.
    """
    refusal = cross_site_refusal(request.method, request.headers)
    if refusal is not None:
        api_abort(403, refusal)
    state = service()
    key = address_key(client_address())
    # Checked before the credentials and whatever they are: answering a correct guess differently
    # from a wrong one would turn the 429 into an oracle.
    wait_s = state.throttle.retry_after(key)
    if wait_s is not None:
        api_abort(429, f"Too many failed authentication attempts from your address; try again in {wait_s} s.",
                  Retry_After=str(wait_s))
    settings = state.settings
    if settings.link_secret is None or not carries_link(request.args):
        return None
    try:
        check_link(settings.link_secret, settings.link_max_ttl_s, request.method, request.path,
                   request.args.to_dict(flat=False), now=time.time())
    except LinkRefused as exc:
        state.throttle.failed(key)
        api_abort(403, str(exc))
    return LINK_ACTOR


def count_failed_credentials() -> None:
    """Count a refused `Authorization` header against the client (a request without one guessed nothing)."""
    if "Authorization" in request.headers:
        service().throttle.failed(address_key(client_address()))
