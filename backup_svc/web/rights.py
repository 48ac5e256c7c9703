"""Reading and changing are different rights (docs/security.md).

Restore, undo and drop change databases: they take the browser login (ADMIN_USERNAME /
ADMIN_PASSWORD, HTTP basic) or `Authorization: Bearer <RESTORE_TOKEN>` — never ADMIN_TOKEN alone
(it lives in CI jobs and scripts that only read), never a signed link, never a request another site
or page sent. Their progress and the list of kept databases may be read with any credential.
"""

from __future__ import annotations

from functools import wraps

from flask import g, request
from werkzeug.exceptions import HTTPException

from backup_svc.links import carries_link
from backup_svc.web.auth import REALM, _same, audit_refused_backup, auth, verify_password
from backup_svc.web.errors import api_abort, error_response
from backup_svc.web.gate import check_before_credentials, count_failed_credentials
from backup_svc.web.state import service

RESTORE_TOKEN_ACTOR = "restore token"
ADMIN_TOKEN_READS_ONLY = (
    "ADMIN_TOKEN may read backups and start them, not restore, undo or drop databases. "
    "Log in with ADMIN_USERNAME / ADMIN_PASSWORD (the dashboard) or send "
    "`Authorization: Bearer <RESTORE_TOKEN>`."
)
LINKS_READ_ONLY = (
    "A signed link can only download a backup; restoring, undoing and dropping need the "
    "dashboard's login or RESTORE_TOKEN."
)
NEEDS_CHANGE_RIGHTS = (
    "Authentication required: log in with ADMIN_USERNAME / ADMIN_PASSWORD or send "
    "`Authorization: Bearer <RESTORE_TOKEN>` (ADMIN_TOKEN cannot restore)."
)


def _refuse(status: int, message: str):
    audit_refused_backup(status, message)
    api_abort(status, message)


def _restore_token_matches() -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and _same(token.strip(), service().settings.restore.token)


def change_rights_required(view):
    """Admit only the browser login or RESTORE_TOKEN; 403 for a signed link, ADMIN_TOKEN or another site."""

    @wraps(view)
    def guarded(*args, **kwargs):
        try:
            check_before_credentials()  # another site or page (403), too many failures (429), a bad link (403)
        except HTTPException as exc:
            audit_refused_backup(exc.code, exc.description)
            raise
        if carries_link(request.args):
            _refuse(403, LINKS_READ_ONLY)
        credentials = request.authorization
        if credentials is not None and credentials.type == "basic":
            user = verify_password(credentials.username or "", credentials.password or "")
            if user:
                g.flask_httpauth_user = user
                return view(*args, **kwargs)
        elif _restore_token_matches():
            g.flask_httpauth_user = RESTORE_TOKEN_ACTOR
            return view(*args, **kwargs)
        elif (
            credentials is not None
            and credentials.type == "bearer"
            and _same(credentials.token, service().settings.admin_token)
        ):
            _refuse(403, ADMIN_TOKEN_READS_ONLY)
        count_failed_credentials()
        audit_refused_backup(401, NEEDS_CHANGE_RIGHTS)
        return error_response(401, NEEDS_CHANGE_RIGHTS, {"WWW-Authenticate": f'Basic realm="{REALM}"'})

    return guarded


def read_rights_required(view):
    """The login, ADMIN_TOKEN or RESTORE_TOKEN (a signed link is for one download only: 403)."""
    checked = auth.login_required(view)

    @wraps(view)
    def guarded(*args, **kwargs):
        if not carries_link(request.args) and _restore_token_matches():
            check_before_credentials()  # another site (403), too many failures (429)
            g.flask_httpauth_user = RESTORE_TOKEN_ACTOR
            return view(*args, **kwargs)
        if carries_link(request.args):
            api_abort(403, LINKS_READ_ONLY)
        return checked(*args, **kwargs)

    return guarded


def capabilities() -> dict:
    """What each credential can do, for the dashboard and GET /api/v1/databases."""
    settings = service().settings
    return {
        "login": {"set": settings.admin_password is not None, "read": True, "backup": True, "restore": True},
        "admin_token": {"set": settings.admin_token is not None, "read": True, "backup": True, "restore": False},
        "restore_token": {"set": settings.restore.token is not None, "read": True, "backup": False, "restore": True},
        "signed_link": {"set": settings.link_secret is not None, "read": True, "backup": True, "restore": False},
    }
