"""The audit trail over HTTP: `GET /api/v1/audit`, and logging backup attempts refused before the view."""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from .audit import AuditTrail, request_facts
from .auth import auth, current_user_or_none

MEMORY_NOTE = "Kept in this process's memory only: lost on restart or redeploy. The log has every attempt."
BACKUP_ENDPOINT = "api.backup"

bp = Blueprint("audit", __name__, url_prefix="/api/v1")


def _stamp_start() -> None:
    g.audit_started = time.time()


def _audit_refusal(response: Response) -> Response:
    """Log backup attempts turned away before the view ran: credentials, links, cross-site, throttle."""
    if (request.endpoint == BACKUP_ENDPOINT and request.method == "GET" and response.status_code >= 400
            and not g.get("backup_audited")):
        body = response.get_json(silent=True) or {}
        denied = response.status_code in (401, 403, 429)  # credentials, link, other site, throttle
        current_app.extensions["backup_svc"].audit.record(
            actor=current_user_or_none(), outcome="denied" if denied else "failed", started=g.get("audit_started", time.time()),
            status=response.status_code, error=body.get("message"), **request_facts())
    return response


@bp.get("/audit")
@auth.login_required
def recent_attempts():
    """The latest backup attempts, newest first (kept in memory; lost on restart)."""
    trail: AuditTrail = current_app.extensions["backup_svc"].audit
    entries = trail.recent()
    return jsonify(entries=entries, kept=trail.keep, note=MEMORY_NOTE)


def install_audit(app: Flask) -> None:
    """Register the audit endpoint and the hook that logs refused backup attempts."""
    app.before_request(_stamp_start)
    app.after_request(_audit_refusal)
    app.register_blueprint(bp)
