"""Restores over HTTP (docs/api.md, "Restore"): start one, follow it, cancel it before the swap; the
databases the service made or kept, undo a swap, drop one after its name was typed.

Starting, cancelling, undoing and dropping change databases: `rights.change_rights_required` (the
login or RESTORE_TOKEN, never ADMIN_TOKEN alone, a signed link or another site). Reading takes any
credential.
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request, url_for

from backup_svc.crypto.common import is_encrypted_name
from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.restoring.engine import NotKept, drop, undo
from backup_svc.restoring.names import BadName, check_new_name
from backup_svc.restoring.server import kept_databases, privileges
from backup_svc.restoring.swap import SwapFailed
from backup_svc.storage.client import StorageError
from backup_svc.storage.presign import NotOurBackup
from backup_svc.web.audit import request_facts
from backup_svc.web.auth import current_actor
from backup_svc.web.errors import api_abort
from backup_svc.web.restore_jobs import Busy, RestoreJobs
from backup_svc.web.rights import capabilities, change_rights_required, read_rights_required
from backup_svc.web.state import service
from backup_svc.web.stored_api import NOT_CONFIGURED, RETRY_AFTER_STORAGE_S

bp = Blueprint("restores", __name__, url_prefix="/api/v1")
MODES = ("new", "replace")


def _jobs() -> RestoreJobs:
    return service().restores


def _job(job_id: str):
    job = _jobs().get(job_id)
    if job is None:
        api_abort(404, "No restore with this id in this process (GET /api/v1/restores lists them).")
    return job


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        api_abort(400, 'Send a JSON object, e.g. {"backup": "<stored name>", "mode": "new"}.')
    return body


@bp.post("/restores")
@change_rights_required
def start():
    """Start a restore of a stored backup: 202 + progress URL; 400 bad input, 404 unknown backup, 409 busy."""
    state, jobs = service(), _jobs()
    body = _body()
    backup, mode = body.get("backup"), body.get("mode", "new")
    live = jobs.link.database
    if not isinstance(backup, str) or not backup:
        api_abort(400, 'Name the stored backup to restore: "backup" (GET /api/v1/stored lists them).')
    if mode not in MODES:
        api_abort(
            400,
            '"mode" is "new" (restore into a new database) or "replace" (swap it in for the live one, which is kept).',
        )
    if mode == "replace" and body.get("confirm") != live:
        api_abort(
            400,
            f'Replacing the live database needs "confirm": the database\'s name, typed ({live}). Nothing was started.',
        )
    try:
        target = body.get("database") or jobs.default_target()
        if not isinstance(target, str):
            raise BadName('"database" is a name')
        check_new_name(target, live)
    except BadName as exc:
        api_abort(400, f"{exc}. Nothing was started.")
    stored = state.stored
    if stored is None:
        api_abort(404, NOT_CONFIGURED)
    try:
        if not stored.prompt.exists(backup):
            api_abort(404, f"There is no stored backup {backup} (any more). GET /api/v1/stored lists them.")
    except NotOurBackup:
        api_abort(404, "No stored backup of this service has that name (GET /api/v1/stored lists them).")
    except StorageError as exc:
        api_abort(503, stored.prompt.explain(exc), Retry_After=RETRY_AFTER_STORAGE_S)
    actor, facts = current_actor(), request_facts()

    def refuse(error: str, message: str) -> None:
        """Not started: the refusal is audited, then answered 409 (raises)."""
        jobs.record(
            "restore",
            actor,
            facts,
            "refused",
            time.time(),
            name=backup,
            error=error,
            status=409,
            details={"mode": mode, "target": target},
        )
        api_abort(409, message)

    if is_encrypted_name(backup) and not state.settings.encryption.identities:
        refusal = (
            f"{backup} is encrypted with age and BACKUP_AGE_IDENTITY is not set, so the service cannot "
            "decrypt it. Set it to the private key (docs/encryption.md). Nothing was started."
        )
        refuse(refusal, refusal)
    try:
        job = jobs.start(backup, mode, target, actor, facts)
    except Busy as exc:
        refuse(str(exc), f"Not started: {exc}.")
    progress_url = url_for("restores.progress", job_id=job.id)
    return jsonify(id=job.id, progress_url=progress_url, target=target, mode=mode), 202, {"Location": progress_url}


@bp.get("/restores")
@read_rights_required
def listing():
    """Recent restores of this process, newest first, and the running one's id."""
    jobs = _jobs()
    running = jobs.running
    return jsonify(
        restores=[job.as_json() for job in jobs.recent()],
        running=running.id if running else None,
        note="Kept in this process's memory only; the audit log has every restore.",
    )


@bp.get("/restores/<job_id>")
@read_rights_required
def progress(job_id: str):
    """One restore's state, phase, percent, bytes, tables, target, kept_as and error."""
    job = _job(job_id)
    return jsonify(job.as_json())


@bp.delete("/restores/<job_id>")
@change_rights_required
def cancel(job_id: str):
    """Cancel a restore before its swap: the half-built database is dropped, the live one untouched."""
    job = _job(job_id)
    if not job.cancellable():
        api_abort(
            409,
            "Too late to cancel: the restore has ended or its swap has begun (a swap either "
            "completes or is undone within RESTORE_SWAP_TIMEOUT).",
        )
    job.cancel_requested.set()
    return jsonify(id=job.id, state=job.state, message="Cancelling: the half-built database will be dropped."), 202


@bp.get("/databases")
@read_rights_required
def databases():
    """The databases this service made or kept, with size and time; and what the service's role may do."""
    jobs = _jobs()
    try:
        with jobs.link.connect() as db:
            kept = kept_databases(db, jobs.link.database)
            rights = privileges(db, jobs.link.database)
    except RestoreFailed as exc:
        api_abort(502, str(exc))
    return jsonify(
        database=jobs.link.database,
        kept=[k.as_json() for k in kept],
        privileges=rights.as_json(jobs.link.database),
        credentials=capabilities(),
        swap_timeout_s=service().settings.restore.swap_timeout_s,
    )


@bp.post("/databases/<name>/undo")
@change_rights_required
def undo_swap(name: str):
    """Swap the kept database `name` back in (the same guarded swap); the live one is kept in turn."""
    jobs, actor, facts, started = _jobs(), current_actor(), request_facts(), time.time()

    def audit(outcome: str, error: str | None = None, **details) -> None:
        jobs.record(
            "restore-undo", actor, facts, outcome, started, name=name, error=error, details={"target": name, **details}
        )

    try:
        with jobs.exclusive(f"an undo (by {actor})"):
            report = undo(jobs.link, name, swap_timeout_s=service().settings.restore.swap_timeout_s)
    except Busy as exc:
        _refused(audit, 409, exc, f"Not undone: {exc}.")
    except NotKept as exc:
        _refused(audit, 404, exc)
    except (SwapFailed, RestoreFailed) as exc:
        audit("failed", str(exc))
        jobs.notify(
            "undo",
            False,
            f"Swapping {name} back in for {jobs.link.database} failed: {exc}",
            name,
            str(exc),
            {"target": name},
        )
        api_abort(409, str(exc))
    audit("ok", kept_as=report.kept_as, downtime_s=round(report.closed_s, 3))
    summary = (
        f"{name} was swapped back in for {jobs.link.database} by {actor}; the data it replaced is kept as "
        f"{report.kept_as}."
    )
    jobs.notify("undo", True, summary, name, None, {"target": name, "kept_as": report.kept_as})
    return jsonify(
        database=jobs.link.database,
        swapped_in=name,
        kept_as=report.kept_as,
        downtime_s=round(report.closed_s, 3),
        warning=report.warning,
        message=summary,
    )


def _refused(audit, status: int, exc: Exception, message: str | None = None) -> None:
    """An undo or drop refused before it changed anything: the audit entry says why, then the answer
    (`message`, else the refusal's own words) with `status`."""
    audit("refused", str(exc))
    api_abort(status, message or str(exc))  # raises


@bp.delete("/databases/<name>")
@change_rights_required
def drop_kept(name: str):
    """Drop one kept database; the body must carry {"confirm": "<its name>"}."""
    jobs, actor, facts, started = _jobs(), current_actor(), request_facts(), time.time()
    body = request.get_json(silent=True)
    confirm = body.get("confirm") if isinstance(body, dict) else None

    def audit(outcome: str, error: str | None = None) -> None:
        jobs.record("restore-drop", actor, facts, outcome, started, name=name, error=error, details={"target": name})

    try:
        with jobs.exclusive(f"a drop (by {actor})"):
            drop(jobs.link, name, confirm)
    except BadName as exc:
        _refused(audit, 400, exc)
    except Busy as exc:
        _refused(audit, 409, exc, f"Not dropped: {exc}.")
    except NotKept as exc:
        _refused(audit, 404, exc)
    except RestoreFailed as exc:
        audit("failed", str(exc))
        api_abort(409, str(exc))
    audit("ok")
    summary = f"The kept database {name} was dropped by {actor}."
    jobs.notify("drop", True, summary, name, None, {"target": name})
    return jsonify(dropped=name, message=summary)
