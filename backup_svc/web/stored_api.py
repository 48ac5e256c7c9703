"""The stored backups over HTTP: `GET /api/v1/stored` (the list, the schedule, the retention),
`GET /api/v1/stored/<name>` (302 to a presigned URL; a dedup backup streamed as a .sql.gz) and `POST /api/v1/stored` (take one now).

Each is a protected path like any other (auth.login_required: cross-site rule, throttle, credentials);
the POST is the one request that changes something, so a browser may send it only from this
service's own pages (security.state_change_refusal). Progress of a stored backup is read from the
same `/api/v1/backups/<id>` as a download's.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from flask import Blueprint, jsonify, redirect, request, url_for

from backup_svc.crypto.common import DecryptionFailed, IdentityNeeded
from backup_svc.history.summary import FAILED_RUNS
from backup_svc.storage.client import StorageError
from backup_svc.storage.holds import active_holds
from backup_svc.files.reader import BadBackup
from backup_svc.storage.dedup.manifest import is_manifest_name
from backup_svc.storage.dedup.sqlgz import MEASURED_MB_S as DEDUP_MB_S, MEASURED_ON as DEDUP_MEASURED_ON
from backup_svc.storage.dedup.sqlgz import sqlgz_members, sqlgz_name, sqlgz_size
from backup_svc.storage.presign import PRESIGN_MAX_S, NotOurBackup
from backup_svc.storage.on_demand import LIST_DEADLINE_S, QUICK_RETRY
from backup_svc.storage.rclone_on_demand import download_limit
from backup_svc.storage.status import freshness, next_run_words, retention_words, schedule_interval
from backup_svc.storage.trend import retention_marks, trend
from backup_svc.timefmt import iso_utc, utc_now
from backup_svc.web.api import RETRY_AFTER_BUSY_S
from backup_svc.web.audit import request_facts
from backup_svc.web.backup_id import require_backup_id
from backup_svc.web.auth import auth, current_actor, stored_backup_auditor
from backup_svc.web.errors import api_abort
from backup_svc.dump.registry import BackupIdInUse
from backup_svc.web.history_view import notify_status, stored_runs
from backup_svc.web.state import service
from backup_svc.web.stored_stream import streamed_response
from backup_svc.runs.scheduler import StoredBackups

bp = Blueprint("stored", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

RETRY_AFTER_STORAGE_S = "30"
NOT_CONFIGURED = (
    "Object storage is not configured: set BACKUP_STORAGE_URL=s3://<bucket>/<prefix> and the "
    "AWS_* variables, or rclone:<remote>:<path> and the RCLONE_CONFIG_* ones (docs/storage.md)."
)


def _stored() -> StoredBackups:
    stored = service().stored
    if stored is None:
        api_abort(404, NOT_CONFIGURED)
    return stored


def storage_status(stored: StoredBackups, now: datetime) -> dict:
    """Where backups go, the schedule, the retention and the latest runs: what needs no storage request."""
    storage = stored.storage
    schedule = storage.watched_schedule
    runs = stored_runs(stored.state)  # from the merged history: every process's runs, kept across restarts
    schedule_json = None
    if schedule is not None:
        next_run = stored.next_run(now)
        schedule_json = {
            "expression": str(schedule),
            "description": schedule.describe(),
            "next_run": iso_utc(next_run.timestamp()),
            "next_run_text": next_run_words(next_run, now),
            "interval_s": int(schedule_interval(schedule, now).total_seconds()),
            "last_run": runs["last_scheduled"],
            # BACKUP_EXPECTED_SCHEDULE: another process (a cron service) takes them; this one only watches
            "taken_by": "this service" if storage.schedule is not None else "another process",
        }
    current = stored.current
    history = stored.state.history.status()
    return {
        "storage": {"url": storage.location.url, "endpoint": stored.prompt.endpoint},
        # how a stored backup downloads: a presigned link, or streamed through the service (an rclone remote)
        "download": download_route(stored.prompt),
        # a dedup backup (….sql.dedup) is always streamed through the service, rebuilt as a .sql.gz
        "dedup_download": download_limit(DEDUP_MB_S, DEDUP_MEASURED_ON),
        "schedule": schedule_json,
        "retention": {
            "setting": str(storage.retention) if storage.retention else None,
            "description": retention_words(storage.retention),
        },
        "last_run": runs["last_run"],
        "last_failure": runs["last_failure"],
        "running": {"id": current.id, "progress_url": url_for("api.backup_progress", backup_id=current.id)}
        if current is not None
        else None,
        "history_note": history["note"],
        "history": history,
        # notifications' delivery problems, restore drills, the staleness alarm (docs/notifications.md)
        "notify": notify_status(stored.state),
    }


@bp.get("/stored")
@auth.login_required
def stored_list():
    """The stored backups, newest first, with the schedule, the retention and the latest runs (docs/api.md)."""
    stored = _stored()
    now = utc_now()
    status = storage_status(stored, now)
    asked = time.monotonic()
    try:
        entries = stored.prompt.backups()
        # within the same 5 s the list promises (docs/api.md), not 5 s more
        holds = stored.prompt.holds(deadline_s=max(LIST_DEADLINE_S - (time.monotonic() - asked), 0.5))
    except StorageError as exc:
        message = stored.prompt.explain(exc)
        log.warning("GET /api/v1/stored: %s", message)
        response = jsonify(error="Service Unavailable", message=message, **status)
        return response, 503, {"Retry-After": RETRY_AFTER_STORAGE_S}
    newest = entries[0].backup if entries else None
    last_scheduled = status["schedule"]["last_run"] if status["schedule"] else None
    fresh = freshness(
        newest.time if newest else None,
        now,
        stored.storage.watched_schedule,
        last_scheduled is not None and last_scheduled.get("outcome") in FAILED_RUNS,
        up_since=stored.up_since,
    )
    held = active_holds(holds)
    marks = retention_marks(entries, stored.storage.retention, held)
    return jsonify(
        backups=[
            {
                **entry.as_json(),
                "kept": marks[entry.backup.name][0],
                "kept_by": list(marks[entry.backup.name][1]),
                "held": entry.backup.name in held,
            }
            for entry in entries
        ],
        # stored by an older version, before the ownership record: read-only (never pruned, not counted)
        unrecorded=[{**entry.as_json(), "owner_record": False} for entry in stored.prompt.catalog.unrecorded],
        # size and rows over the last 90 days (≤ 60 backups), oldest first, and the shrink alarms' holds
        trend=trend(entries, stored.storage.retention, holds, now),
        shrink_alert={
            "threshold": stored.storage.shrink_alert,
            "alerts": [hold_json(hold) for hold in holds if hold.active],
        },
        newest={
            "name": newest.name,
            "time": iso_utc(newest.time.timestamp()),
            "age_s": int(fresh.age_s),
            "stale": fresh.stale,
            "warning": fresh.warning,
        }
        if newest
        else {"name": None, "time": None, "age_s": None, "stale": fresh.stale, "warning": fresh.warning},
        **status,
    )


def download_route(prompt) -> dict:
    """`download` in the list (docs/api.md): a presigned link, or through the service with Railway's HTTP limit."""
    if prompt.streams_downloads:
        return download_limit()
    return {"via": "link", "link_valid_s": PRESIGN_MAX_S}


def hold_json(hold) -> dict:
    """One shrink alarm's retention hold as the API shows it, with where to acknowledge it."""
    return {**hold.as_json(), "acknowledge_url": url_for("holds.acknowledge", name=hold.held)}


def open_dedup_sqlgz(prompt, name: str, secret: str):
    """(length, gzip members) of the dedup backup `name` as a .sql.gz (storage/dedup/sqlgz.py): the manifest
    is read now (a bad one fails before any status is sent), the chunks as the body is sent."""
    from backup_svc.storage.dedup.chunks import ChunkKey
    from backup_svc.storage.dedup.source import dedup_opener
    from backup_svc.storage.reader import open_object

    key = prompt.location.key(name)
    first = open_object(prompt.client, prompt.location.bucket, key, retry=QUICK_RETRY)
    stream = dedup_opener(prompt.client, prompt.location.bucket, key, ChunkKey(secret) if secret else None, first)()
    if stream.manifest.encrypted:  # (read with identities only when given: open_manifest refuses without them)
        raise IdentityNeeded("the dashboard does not rebuild an encrypted dedup backup")
    return sqlgz_size(stream.manifest), sqlgz_members(stream)


@bp.get("/stored/<name>")
@auth.login_required
def download(name: str):
    """302 to a presigned URL of the stored backup `name` (valid ≤ 10 minutes), or for an rclone remote the
    bytes streamed through the service (stored_stream.py), or for a dedup backup (….sql.dedup) the .sql.gz
    rebuilt from its chunks, streamed through the service too; 404 for any other name."""
    stored = _stored()
    audit = stored_backup_auditor("stored-download", name)
    prompt, size, url, members = stored.prompt, None, None, None
    try:
        if (
            is_manifest_name(name) and not prompt.streams_downloads
        ):  # a dedup backup: rebuilt as a .sql.gz from its chunks, through this service
            if prompt.exists(name):
                size, members = open_dedup_sqlgz(prompt, name, stored.storage.dedup_key)
        elif prompt.streams_downloads:  # an rclone remote: no presigned links, the bytes pass through here
            size = prompt.size_of(name)
        else:
            url = prompt.download_url(name)
    except NotOurBackup:
        audit("refused", 404, "not one of this service's backup names")
        api_abort(
            404,
            "No stored backup of this service has that name: names look like "
            f"{stored.prompt.names.backup_name}_backup_YYYYMMDD_HHMMSS.sql.gz (GET /api/v1/stored lists them).",
        )
    except StorageError as exc:
        message = stored.prompt.explain(exc)
        audit("failed", 503, message)
        api_abort(503, message, Retry_After=RETRY_AFTER_STORAGE_S)
    except DecryptionFailed:  # an age-encrypted dedup backup: its chunks are not handed out decrypted here
        audit("refused", 409, "an encrypted dedup backup is not downloaded through the service")
        api_abort(
            409,
            f"{name} is an age-encrypted dedup backup: the dashboard does not hand it out decrypted. "
            "Restore it here, or rebuild it where the private key is: "
            f"`BACKUP_AGE_IDENTITY=… backup-svc get {name} -o FILE.sql.gz`.",
        )
    except BadBackup as exc:  # a manifest this version cannot read (or the wrong BACKUP_DEDUP_KEY)
        audit("failed", 502, str(exc))
        api_abort(502, f"{name} cannot be rebuilt as a .sql.gz: {exc}")
    if url is None and size is None:
        audit("refused", 404, "no such object")
        api_abort(
            404,
            f"There is no stored backup {name} (any more): retention may have deleted it. "
            "GET /api/v1/stored lists the ones there are.",
        )
    if members is not None:  # Content-Length is known from the manifest; a damaged chunk ends the body short
        return streamed_response(sqlgz_name(name), size, members, audit, request.environ)
    if url is None:
        return streamed_response(name, size, prompt.open(name), audit, request.environ)
    audit("ok", 302)
    # The URL is a credential for this object until it expires: it goes only into this Location header
    # (the access log writes paths, never query strings; nothing else here logs it).
    return redirect(url, code=302)


@bp.post("/stored")
@auth.login_required
def start():
    """Take a stored backup now: 202 and its progress id; 429 while any dump or upload runs."""
    stored = _stored()
    state = service()
    progress_id = request.args.get("progress_id")
    require_backup_id(progress_id)
    actor, facts, started = current_actor(), request_facts(), time.time()
    try:
        record = stored.start_now(actor, facts, progress_id)
    except BackupIdInUse:
        api_abort(409, "This progress_id belongs to another backup; choose a new random one for each backup.")
    if record is None:
        message = (
            "A backup is running (a download or a stored backup); a stored backup starts only when none "
            "does. Try again when it has finished."
        )
        state.audit.record(
            event="stored-backup",
            actor=actor,
            outcome="refused",
            started=started,
            status=429,
            error="a backup is running",
            **facts,
        )
        api_abort(429, message, Retry_After=RETRY_AFTER_BUSY_S)
    progress_url = url_for("api.backup_progress", backup_id=record.id)
    body = {
        "id": record.id,
        "name": record.filename,
        "progress_url": progress_url,
        "storage": stored.storage.location.url,
    }
    return jsonify(body), 202, {"Location": progress_url}
