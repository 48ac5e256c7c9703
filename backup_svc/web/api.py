"""The JSON/HTTP API: `/api/v1/backup` (the stream), `/api/v1/backups/<id>` (its progress), `/api/v1/database`,
`/api/v1/audit`."""

from __future__ import annotations

import logging
import time
from http import HTTPStatus

from flask import Blueprint, Response, jsonify, request

from backup_svc.dump.backup import backup_filename, open_dump
from backup_svc.dump.compression import compressor_name
from backup_svc.dump.pipeline import DumpInterrupted
from backup_svc.dump.registry import BackupIdInUse
from backup_svc.dump.report import Delivery, progress_report
from backup_svc.dump.watch import EAGER_SAMPLE_INTERVAL_S, SAMPLE_INTERVAL_S
from backup_svc.pg.diagnose import ABORTED, CANCELLED, INCOMPATIBLE, LOCKED, NOT_ANSWERING, CannotDump
from backup_svc.pg.facts import server_facts
from backup_svc.pg.readiness import dump_readiness
from backup_svc.serving.clientconn import client_gone_probe, disconnector
from backup_svc.serving.sendmeter import SendMeter
from backup_svc.timefmt import iso_utc
from backup_svc.web.audit import request_facts
from backup_svc.web.auth import auth, current_actor
from backup_svc.web.backup_id import BAD_BACKUP_ID, is_backup_id, require_backup_id
from backup_svc.web.download import UNSENT_BODY, StreamingBackup, download_headers
from backup_svc.web.errors import api_abort
from backup_svc.web.gate import starts_dump
from backup_svc.web.state import BackupService, service

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

RETRY_AFTER_BUSY_S = "30"
RETRY_AFTER_LOCKED_S = "60"
# /api/v1/database waits at most this long for the database (connect, then the query): a stalled
# link must not hide the running dumps, which it lists too.
DATABASE_TIMEOUT_S = 3
# A client-chosen backup id (?progress_id=): long enough not to collide, safe in URLs and logs.


def _status_for(kind: str) -> int:
    if kind == NOT_ANSWERING:
        return 504
    if kind == CANCELLED:
        return 409
    return 503 if kind in (INCOMPATIBLE, LOCKED) else 502


@bp.route("/backup", methods=["GET", "HEAD"])
@auth.login_required
@starts_dump
def backup():
    """Stream a gzip-compressed plain-SQL dump of the whole database (`?encrypt=age`: age-encrypted)."""
    state = service()
    recipients = _recipients_asked_for(state)
    filename = backup_filename(state.settings.backup_name, encrypted=bool(recipients))
    headers = download_headers(filename)
    content_type = "application/octet-stream" if recipients else "application/gzip"
    actor, facts, started = current_actor(), request_facts(), time.time()
    audit = state.audit

    def refuse(
        status: int,
        message: str,
        outcome: str = "refused",
        backup_id: str | None = None,
        error: str | None = None,
        **extra_headers: str,
    ):
        """Audit this attempt as turned away, then answer `status`."""
        audit.record(
            actor=actor,
            outcome=outcome,
            started=started,
            backup_id=backup_id,
            status=status,
            error=error or message,
            **facts,
        )
        api_abort(status, message, **extra_headers)

    progress_id = request.args.get("progress_id")
    if progress_id is not None and not is_backup_id(progress_id):
        if request.method == "HEAD":
            require_backup_id(progress_id)
        refuse(400, BAD_BACKUP_ID)
    if request.method == "HEAD":
        # No dump, so no X-Backup-Id; and no `Content-Length: 0`, which would claim an empty backup
        # (a GET's length is unknown: it is chunked).
        response = Response(status=200, headers=headers, content_type=content_type)
        response.automatically_set_content_length = False
        return response

    try:
        record = state.registry.try_begin(filename, actor, progress_id)
    except BackupIdInUse:
        refuse(409, "This progress_id belongs to another backup; choose a new random one for each download.")
    if record is None:
        message = (
            f"{state.settings.max_concurrent} backup(s) already running (BACKUP_MAX_CONCURRENT); "
            f"try again when it has finished."
        )
        if state.registry.held_by is not None:
            message = f"No backup starts while {state.registry.held_by} runs; try again when it has finished."
        if progress_id is not None:  # the page that chose the id cannot read this status: it polls for it
            state.registry.refused(progress_id, filename, actor, 429, message)
        refuse(429, message, "refused", progress_id, "concurrency limit reached", Retry_After=RETRY_AFTER_BUSY_S)
    record.client_gone = client_gone_probe(request.environ)
    record.disconnect = disconnector(request.environ)
    audit.started(actor=actor, backup_id=record.id, started=started, **facts)
    try:
        dump, _, _ = open_dump(
            state.settings.dump,
            state.pg_dumps,
            application_name=record.application_name,
            progress=record.progress,
            interrupt=record.interrupt,
            created=lambda d: setattr(record, "dump", d),
            count_rows=True,
        )  # the audit entry records the rows the download holds
    except DumpInterrupted as exc:
        if exc.kind == ABORTED:  # nobody is there to read a status
            state.registry.end(record)
            audit.record(
                actor=actor,
                outcome=ABORTED,
                started=started,
                backup_id=record.id,
                status=None,
                error=exc.message,
                **facts,
            )
            return Response(status=400)
        state.registry.end(record, status=409, error=exc.message)
        refuse(409, f"The backup was {exc.message} before it started sending.", CANCELLED, record.id)
    except CannotDump as exc:
        status = _status_for(exc.kind)
        state.registry.end(record, status=status, error=exc.message)
        extra = {"Retry_After": RETRY_AFTER_LOCKED_S} if exc.kind == LOCKED else {}
        refuse(status, exc.message, "refused", record.id, **extra)
    except BaseException:
        log.exception("backup %s: unexpected error before the download started", record.id)
        message = "The service hit an unexpected error before the download started; it has been logged."
        state.registry.end(record, status=500, error=message)
        audit.record(
            actor=actor, outcome="failed", started=started, backup_id=record.id, status=500, error=message, **facts
        )
        raise
    record.meter = SendMeter(request.environ.get("gunicorn.socket"))
    body = StreamingBackup(dump, record, state, facts, recipients)
    request.environ[UNSENT_BODY] = body  # from here on, a failure anywhere closes the body
    response = Response(body, status=200, headers=headers, content_type=content_type)
    response.headers["X-Backup-Id"] = record.id
    return response


def _recipients_asked_for(state: BackupService) -> tuple:
    """BACKUP_AGE_RECIPIENTS when the request says `?encrypt=age`; () without `encrypt`; 400 otherwise."""
    asked = request.args.get("encrypt")
    if asked is None:
        return ()
    if asked != "age":
        api_abort(400, "encrypt takes one value, age (the file is then age-encrypted to BACKUP_AGE_RECIPIENTS).")
    recipients = state.settings.encryption.recipients
    if not recipients:
        api_abort(400, "encrypt=age needs BACKUP_AGE_RECIPIENTS (the public keys to encrypt to); it is not set.")
    return recipients


@bp.get("/backups/<backup_id>")
@auth.login_required
def backup_progress(backup_id: str):
    """Progress of a running or recently finished backup attempt, by its id (see docs/api.md)."""
    state = service()
    require_backup_id(backup_id)
    record = state.registry.get(backup_id)
    if record is None:
        api_abort(404, "No running or recently finished backup has this id (finished attempts are kept for an hour).")
    running = state.registry.is_running(backup_id)
    if running and record.progress.outcome is None:
        watch = record.watch
        eager = watch.missing_sample(record.progress.current_table)
        watch.refresh(
            state.settings.conn,
            record.application_name,
            interval_s=EAGER_SAMPLE_INTERVAL_S if eager else SAMPLE_INTERVAL_S,
        )
    meter = record.meter
    delivery = None
    if meter is not None:
        delivery = Delivery(meter.delivered() if running else meter.written, meter.rate(), meter.send_seconds())
    report = progress_report(
        record.id,
        record.filename,
        record.progress,
        running=running,
        status=record.status,
        watch=record.watch,
        destination=record.destination,
        delivery=delivery,
    )
    if report["state"] == "running":
        report["percent"] = record.shown.advance(report["percent"])
    return jsonify(report), 200


def _running_dumps(state: BackupService) -> list[dict]:
    """The dumps running now, started by anyone: what the dashboard and /api/v1/database list."""
    return [
        {
            "id": r.id,
            "actor": r.actor,
            "started_at": iso_utc(r.progress.started),
            "phase": r.progress.phase,
            "bytes_sent": r.progress.gzip_bytes,
        }
        for r in state.registry.running()
    ]


@bp.get("/backups")
@auth.login_required
def running_backups():
    """The backups running now (who, since when) and whether a new one would have to wait."""
    state = service()
    registry = state.registry
    return jsonify(running=_running_dumps(state), limit=registry.limit, busy=registry.at_limit()), 200


@bp.get("/database")
@auth.login_required
def database():
    """What will be backed up: database, server, size, tables, the pg_dump that would run.

    Answers within about DATABASE_TIMEOUT_S even when the database does not (its message then says
    so), and lists the running dumps either way.
    """
    state = service()
    settings = state.settings
    timeout_s = min(settings.connect_timeout_s, DATABASE_TIMEOUT_S)
    ready = dump_readiness(lambda: server_facts(settings.conn, timeout_s=timeout_s), state.pg_dumps)
    if ready.facts_error is not None:
        status = _status_for(ready.facts_error.kind)
        response = jsonify(
            error=HTTPStatus(status).phrase,
            message=ready.facts_error.message,
            dumps_in_progress=state.registry.running_count(),
            dumps=_running_dumps(state),
        )
        return response, status
    facts, chosen = ready.facts, ready.pg_dump
    pg_dump = {"path": chosen.path, "version": chosen.version, "caveat": ready.caveat} if chosen else None
    return jsonify(
        database=facts.database,
        server_version=facts.version,
        server_version_num=facts.version_num,
        size_bytes=facts.size_bytes,
        table_count=facts.table_count,
        pg_dump=pg_dump,
        pg_dump_error=ready.pg_dump_error.message if ready.pg_dump_error else None,
        pg_dumps_installed=[{"path": b.path, "version": b.version} for b in state.pg_dumps],
        dumps_in_progress=state.registry.running_count(),
        dumps=_running_dumps(state),
        backup_name=settings.backup_name,
        compression=compressor_name(settings.gzip_level),
        storage=state.stored.report() if state.stored is not None else None,
    )
