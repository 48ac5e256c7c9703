"""Acknowledging a shrink alarm: `POST /api/v1/stored/holds/<name>/acknowledge` ends the retention
hold on the backup kept since the drop (storage/holds.py), so retention's rules apply to it again,
and makes the new level the baseline later backups are compared with.

A protected path like any other (auth.login_required); a POST, so a browser may send it only from
this service's own pages. Every attempt is audited (event `shrink-acknowledged`).
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from backup_svc.storage.client import StorageError
from backup_svc.storage.presign import NotOurBackup
from backup_svc.web.auth import auth, current_actor, stored_backup_auditor
from backup_svc.web.errors import api_abort
from backup_svc.web.state import service
from backup_svc.web.stored_api import NOT_CONFIGURED, RETRY_AFTER_STORAGE_S

bp = Blueprint("holds", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)
AUDIT_EVENT = "shrink-acknowledged"


@bp.post("/stored/holds/<name>/acknowledge")
@auth.login_required
def acknowledge(name: str):
    """Release the hold on the stored backup `name`: 200 when released, 404 when there is none."""
    state = service()
    stored = state.stored
    if stored is None:
        api_abort(404, NOT_CONFIGURED)
    actor, audit = current_actor(), stored_backup_auditor(AUDIT_EVENT, name)

    try:
        released = stored.prompt.acknowledge(name, actor)
    except NotOurBackup:
        audit("refused", 404, "not one of this service's backup names")
        api_abort(404, "No stored backup of this service has that name, so nothing holds it.")
    except StorageError as exc:
        message = stored.prompt.explain(exc)
        audit("failed", 503, message)
        api_abort(503, message + " The hold is still in place.", Retry_After=RETRY_AFTER_STORAGE_S)
    if not released:
        audit("refused", 404, "no hold on this backup")
        api_abort(
            404,
            f"No open shrink alarm holds {name} (it may have been acknowledged already). "
            "GET /api/v1/stored lists the alarms there are.",
        )
    log.warning("shrink alarm acknowledged by %s: retention no longer holds %s", actor, name)
    audit("ok", 200)
    return jsonify(
        released=name,
        message=f"Acknowledged: retention no longer holds {name}; its own rules decide from the next stored backup on.",
    )
