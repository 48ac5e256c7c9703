"""Who may use the service: HTTP basic for browsers, `Authorization: Bearer` for scripts, signed links."""

from __future__ import annotations

import hmac
import time
from functools import wraps
from typing import Callable

from flask import g, request
from flask_httpauth import HTTPBasicAuth, HTTPTokenAuth, MultiAuth
from werkzeug.exceptions import HTTPException

from backup_svc.web.audit import AUDITED_ENDPOINTS, DENIED, request_facts
from backup_svc.web.errors import error_response
from backup_svc.web.gate import check_before_credentials, count_failed_credentials
from backup_svc.web.state import service

REALM = "backup_svc"
TOKEN_ACTOR = "token"

basic_auth = HTTPBasicAuth(realm=REALM)
token_auth = HTTPTokenAuth(scheme="Bearer")


class GatedAuth(MultiAuth):
    """Basic or bearer credentials, or a signed link; all behind the cross-site and throttle checks."""

    def login_required(self, f=None, role=None, optional=None):
        """Like MultiAuth's, with `gate.check_before_credentials` run first."""
        check_credentials = super().login_required(role=role, optional=optional)

        def wrap(view):
            checked = check_credentials(view)

            @wraps(view)
            def gated(*args, **kwargs):
                try:
                    link_actor = check_before_credentials()
                except HTTPException as exc:
                    audit_refused_backup(exc.code, exc.description)
                    raise
                if link_actor is None:
                    return checked(*args, **kwargs)
                g.flask_httpauth_user = link_actor
                return view(*args, **kwargs)

            return gated

        return wrap(f) if f else wrap


auth = GatedAuth(basic_auth, token_auth)


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time equality; an unset expected value matches nothing."""
    if expected is None or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@basic_auth.verify_password
def verify_password(username: str, password: str) -> str | None:
    """The username when both it and the password match ADMIN_USERNAME / ADMIN_PASSWORD."""
    settings = service().settings
    user_ok = _same(username, settings.admin_username)
    password_ok = _same(password, settings.admin_password)  # compared even when the user is wrong
    return username if user_ok and password_ok else None


@token_auth.verify_token
def verify_token(token: str) -> str | None:
    """ "token" when the bearer token matches ADMIN_TOKEN."""
    settings = service().settings
    return TOKEN_ACTOR if _same(token, settings.admin_token) else None


@basic_auth.error_handler
@token_auth.error_handler
def auth_failed(status: int):
    """401 in the service's error shape, always inviting HTTP basic (the browser's login prompt)."""
    count_failed_credentials()
    message = (
        "Authentication required: send `Authorization: Bearer <ADMIN_TOKEN>` or log in with "
        "ADMIN_USERNAME / ADMIN_PASSWORD."
    )
    audit_refused_backup(status, message)
    return error_response(status, message, {"WWW-Authenticate": f'Basic realm="{REALM}"'})


def current_actor() -> str:
    """Who made this request: the basic-auth username, "token" or "signed link"."""
    return auth.current_user() or "unknown"


def current_user_or_none() -> str | None:
    """Who made this request, or None when nobody authenticated (yet)."""
    return auth.current_user() or None


def stored_backup_auditor(event: str, name: str) -> Callable[..., None]:
    """`audit(outcome, status, error=None, **amounts)`: records this request's outcome as `event` on the
    stored backup `name`, with who asked, from where and since when (taken now, as the request starts)."""
    state, actor, facts, started = service(), current_actor(), request_facts(), time.time()

    def audit(outcome: str, status: int, error: str | None = None, **amounts) -> None:
        state.audit.record(
            event=event,
            actor=actor,
            outcome=outcome,
            started=started,
            status=status,
            name=name[:200],
            error=error,
            **facts,
            **amounts,
        )

    return audit


def audit_refused_backup(status: int, message: str | None) -> None:
    """Audit a backup attempt turned away before its view ran: another site, throttle, link, credentials.

    Nobody has authenticated at that point, so the entry has no actor. Other endpoints are not attempts.
    """
    method, event = AUDITED_ENDPOINTS.get(request.endpoint, (None, None))
    if request.method != method:
        return
    service().audit.record(
        event=event, actor=None, outcome=DENIED, started=time.time(), status=status, error=message, **request_facts()
    )
