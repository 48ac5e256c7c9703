"""The JSON/HTTP API: `/api/v1/backup` (the stream), `/api/v1/backups/<id>` (its progress), `/api/v1/database`."""
from __future__ import annotations

import logging
import re
import time

from flask import Blueprint, Response, current_app, jsonify, request

from .audit import AuditTrail, request_facts
from .auth import auth, current_actor
from .compression import compressor_name
from .database import server_facts
from .diagnose import INCOMPATIBLE, LOCKED, CannotDump
from .errors import api_abort
from .pipeline import DumpBroken, GzipDump
from .progress_report import progress_report
from .registry import BackupIdInUse, BackupRecord
from .service import BackupService, backup_filename, choose_pg_dump, open_dump, restore_caveat

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

RETRY_AFTER_BUSY_S = "30"
RETRY_AFTER_LOCKED_S = "60"
# A client-chosen backup id (?progress_id=): long enough not to collide, safe in URLs and logs.
BACKUP_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _service() -> BackupService:
    return current_app.extensions["backup_svc"]


def _status_for(kind: str) -> int:
    return 503 if kind in (INCOMPATIBLE, LOCKED) else 502


class StreamingBackup:
    """The response body: yields the dump, and on close (done, failed or abandoned) cleans up once.

    A class rather than a generator because a generator that was never started does not run its
    `finally` when closed, and the server closes a body it never iterated (HEAD, early disconnect).
    """

    def __init__(self, dump: GzipDump, record: BackupRecord, service: BackupService, facts: dict):
        self.dump = dump
        self.record = record
        self.service = service
        self.facts = facts  # client and user agent, read while the request was live
        self._closed = False

    def __iter__(self):
        try:
            yield from self.dump
            # The last chunk has been written (gunicorn asked for the next one): free the slot now,
            # not when the server gets round to closing the body, or the client's next download
            # could meet a 429 from this one.
            self.service.registry.end(self.record)
        except DumpBroken as exc:
            # Raising after the headers went out makes the server drop the connection without the
            # final chunk: the client sees a broken transfer, never a complete-looking file.
            log.error("backup %s broken mid-stream: %s", self.record.id, exc)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.dump.close()
        self.service.registry.end(self.record)
        progress = self.record.progress
        self.service.audit.record(actor=self.record.actor, outcome=progress.outcome or "aborted",
                                  started=progress.started, backup_id=self.record.id, status=200,
                                  gzip_bytes=progress.gzip_bytes, sql_bytes=progress.sql_bytes,
                                  error=progress.error, sha256=progress.sha256, **self.facts)


def _download_headers(filename: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }


@bp.route("/backup", methods=["GET", "HEAD"])
@auth.login_required
def backup():
    """Stream a gzip-compressed plain-SQL dump of the whole database."""
    service = _service()
    filename = backup_filename(service.settings.backup_name)
    headers = _download_headers(filename)
    progress_id = _backup_id(request.args.get("progress_id"))
    if request.method == "HEAD":
        return Response(status=200, headers=headers, content_type="application/gzip")

    actor, facts, started = current_actor(), request_facts(), time.time()
    audit: AuditTrail = service.audit
    try:
        record = service.registry.try_begin(filename, actor, progress_id)
    except BackupIdInUse:
        api_abort(409, "This progress_id belongs to another backup; choose a new random one for each download.")
    if record is None:
        audit.record(actor=actor, outcome="refused", started=started, backup_id=progress_id, status=429,
                     error="concurrency limit reached", **facts)
        message = (f"{service.settings.max_concurrent} backup(s) already running (BACKUP_MAX_CONCURRENT); "
                   f"try again when it has finished.")
        if progress_id is not None:  # the page that chose the id cannot read this status: it polls for it
            service.registry.refused(progress_id, filename, actor, 429, message)
        api_abort(429, message, Retry_After=RETRY_AFTER_BUSY_S)
    try:
        dump, _, _ = open_dump(service.settings, service.pg_dumps,
                               application_name=record.application_name, progress=record.progress)
    except CannotDump as exc:
        status = _status_for(exc.kind)
        service.registry.end(record, status=status, error=exc.message)
        audit.record(actor=actor, outcome="refused", started=started, backup_id=record.id,
                     status=status, error=exc.message, **facts)
        extra = {"Retry_After": RETRY_AFTER_LOCKED_S} if exc.kind == LOCKED else {}
        api_abort(status, exc.message, **extra)
    except BaseException:
        service.registry.end(record)
        raise
    body = StreamingBackup(dump, record, service, facts)
    response = Response(body, status=200, headers=headers, content_type="application/gzip")
    response.headers["X-Backup-Id"] = record.id
    return response


def _backup_id(value: str | None) -> str | None:
    """A valid client-chosen backup id, None when absent; 400 when malformed."""
    if value is None:
        return None
    if not BACKUP_ID.fullmatch(value):
        api_abort(400, "progress_id must be 8 to 64 characters from A-Z, a-z, 0-9, '-' and '_'.")
    return value


@bp.get("/backups/<backup_id>")
@auth.login_required
def backup_progress(backup_id: str):
    """Progress of a running or recently finished backup attempt, by its id (see docs/api.md)."""
    service = _service()
    _backup_id(backup_id)
    record = service.registry.get(backup_id)
    if record is None:
        api_abort(404, "No running or recently finished backup has this id (finished attempts are kept for an hour).")
    running = service.registry.is_running(backup_id)
    if running and record.progress.outcome is None:
        record.watch.refresh(service.settings.conn, record.application_name)
    report = progress_report(record.id, record.filename, record.progress, running=running,
                             status=record.status, watch=record.watch)
    return jsonify(report), 200, {"Cache-Control": "no-store"}


@bp.get("/database")
@auth.login_required
def database():
    """What will be backed up: database, server, size, tables, the pg_dump that would run."""
    service = _service()
    try:
        facts = server_facts(service.settings.conn, timeout_s=service.settings.connect_timeout_s)
    except CannotDump as exc:
        api_abort(_status_for(exc.kind), exc.message)
    try:
        chosen = choose_pg_dump(facts, service.pg_dumps)
        pg_dump = {"path": chosen.path, "version": chosen.version, "caveat": restore_caveat(facts, chosen)}
        pg_dump_error = None
    except CannotDump as exc:
        pg_dump, pg_dump_error = None, exc.message
    return jsonify(
        database=facts.database,
        server_version=facts.version,
        server_version_num=facts.version_num,
        size_bytes=facts.size_bytes,
        table_count=facts.table_count,
        pg_dump=pg_dump,
        pg_dump_error=pg_dump_error,
        pg_dumps_installed=[{"path": b.path, "version": b.version} for b in service.pg_dumps],
        dumps_in_progress=service.registry.running_count(),
        backup_name=service.settings.backup_name,
        compression=compressor_name(service.settings.gzip_level),
    )
