"""What every protected request passes before its credentials are looked at.

In order: refuse changes (POST…) not sent by this service's own pages, and requests steered by another
site or page (403; for views marked `starts_dump`, the contract's stricter browser rule, which a valid
signed link passes), refuse addresses that failed to authenticate too often (429), then judge a signed
link if the request carries one (403 when bad).
`auth.login_required` runs this, so every protected view, present and future, gets all of it.
"""

from __future__ import annotations

import time

from flask import current_app, request

from backup_svc.clientaddress import address_key
from backup_svc.links import LINK_ACTOR, LinkRefused, carries_link, check_link
from backup_svc.web.errors import api_abort
from backup_svc.web.proxy import client_address
from backup_svc.web.security import (
    STEERED_DUMP,
    cross_site_refusal,
    state_change_refusal,
    steered_dump,
    top_level_navigation,
)
from backup_svc.web.state import service


def starts_dump(view):
    """Mark a view that starts a dump: the contract's browser rule applies to it (security.steered_dump)."""
    view.starts_dump = True
    return view


def _starts_dump() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    return request.method != "HEAD" and getattr(view, "starts_dump", False)


def check_before_credentials() -> str | None:
    """Abort with 403/429 when the request may not proceed; "signed link" when a valid link admits it.

    None means: go on and check the `Authorization` header.
    """
    refusal = state_change_refusal(request.method, request.headers, request.host_url)
    if refusal is not None:
        api_abort(403, refusal)
    state = service()
    settings = state.settings
    link = settings.link_secret is not None and carries_link(request.args)
    if _starts_dump():
        steered = steered_dump(request.headers)
        # A signed link is the main app's way in: a link the person clicked there, so a top-level
        # navigation. The same link in another page's <img>, fetch or frame is refused like the rest.
        if steered and not (link and top_level_navigation(request.method, request.headers)):
            api_abort(403, STEERED_DUMP, dashboard_link=True)
    else:
        steered = False
        refusal = cross_site_refusal(request.method, request.headers)
        if refusal is not None:
            api_abort(403, refusal)
    key = address_key(client_address())
    # Checked before the credentials and whatever they are: answering a correct guess differently
    # from a wrong one would turn the 429 into an oracle.
    wait_s = state.throttle.retry_after(key)
    if wait_s is not None:
        api_abort(
            429,
            f"Too many failed authentication attempts from your address; try again in {wait_s} s.",
            Retry_After=str(wait_s),
        )
    if not link:
        return None
    try:
        check_link(
            settings.link_secret,
            settings.link_max_ttl_s,
            request.method,
            request.path,
            request.args.to_dict(flat=False),
            now=time.time(),
        )
    except LinkRefused as exc:
        if steered:
            # Another page sent a bad link: not this client's guess, so it must not count towards
            # locking the admin's address out.
            api_abort(403, STEERED_DUMP, dashboard_link=True)
        state.throttle.failed(key)
        api_abort(403, str(exc))
    return LINK_ACTOR


def count_failed_credentials() -> None:
    """Count a refused `Authorization` header against the client (a request without one guessed nothing)."""
    if "Authorization" in request.headers:
        service().throttle.failed(address_key(client_address()))
