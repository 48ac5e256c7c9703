"""`DELETE /api/v1/backups/<id>`: stop a running backup, whoever started it (the dashboard's Cancel)."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, jsonify

from backup_svc.dump.report import progress_report
from backup_svc.links import LINK_ACTOR
from backup_svc.web.audit import request_facts
from backup_svc.web.auth import auth, current_actor
from backup_svc.web.backup_id import require_backup_id
from backup_svc.web.errors import api_abort
from backup_svc.web.state import BackupService, service

bp = Blueprint("cancel", __name__)
log = logging.getLogger(__name__)

# How long the cancel waits for the stream to end before cutting its client's connection.
CANCEL_WAIT_S = 2.0


@bp.delete("/api/v1/backups/<backup_id>")
@auth.login_required
def cancel_backup(backup_id: str):
    """Cancel a running backup: pg_dump stops, its client gets a broken transfer (see docs/api.md)."""
    _no_signed_link()
    state = service()
    require_backup_id(backup_id)
    record = state.registry.get(backup_id)
    if record is None:
        api_abort(404, "No running or recently finished backup has this id.")
    if not state.registry.is_running(backup_id):
        api_abort(409, "This backup is not running any more; nothing to cancel.")
    actor = current_actor()
    log.warning("backup %s cancelled by %s from %s", backup_id, actor, request_facts()["client"])
    record.cancel(actor)
    # pg_dump stops at once; the stream ends when its thread next runs. A client that reads nothing
    # leaves that thread blocked in a write: then its connection is cut, which ends the write.
    if not _wait_until_ended(state, backup_id, CANCEL_WAIT_S):
        record.disconnect()
        _wait_until_ended(state, backup_id, CANCEL_WAIT_S)
    report = progress_report(
        record.id,
        record.filename,
        record.progress,
        running=state.registry.is_running(backup_id),
        status=record.status,
        watch=record.watch,
    )
    return jsonify(report), 200


def _wait_until_ended(state: BackupService, backup_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while state.registry.is_running(backup_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _no_signed_link() -> None:
    """403 for a signed link: it may only download.

    From a browser only this service's own pages may cancel: the gate's one same-origin rule
    (security.state_change_refusal) has refused every other page before the credentials were read.
    """
    if current_actor() == LINK_ACTOR:
        api_abort(403, "A signed link can only download; cancelling needs the admin credentials.")
