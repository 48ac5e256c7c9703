"""The JSON/HTTP API: `/api/v1/backup` (the stream), `/api/v1/backups/<id>` (its progress), `/api/v1/database`,
`/api/v1/audit`."""
from __future__ import annotations

import logging
import re
import time

from flask import Blueprint, Response, jsonify, request

from backup_svc.dump.backup import backup_filename, open_dump
from backup_svc.dump.compression import compressor_name
from backup_svc.dump.pipeline import DumpBroken, GzipDump
from backup_svc.dump.report import progress_report
from backup_svc.pg.diagnose import INCOMPATIBLE, LOCKED, CannotDump
from backup_svc.pg.facts import server_facts
from backup_svc.pg.readiness import dump_readiness
from backup_svc.web.audit import MEMORY_NOTE, request_facts
from backup_svc.web.auth import auth, current_actor
from backup_svc.web.errors import api_abort
from backup_svc.web.registry import BackupIdInUse, BackupRecord
from backup_svc.web.state import BackupService, service

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

RETRY_AFTER_BUSY_S = "30"
RETRY_AFTER_LOCKED_S = "60"
# A client-chosen backup id (?progress_id=): long enough not to collide, safe in URLs and logs.
BACKUP_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
BAD_BACKUP_ID = "progress_id must be 8 to 64 characters from A-Z, a-z, 0-9, '-' and '_'."


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
    state = service()
    filename = backup_filename(state.settings.backup_name)
    headers = _download_headers(filename)
    actor, facts, started = current_actor(), request_facts(), time.time()
    audit = state.audit

    def refuse(status: int, message: str, outcome: str = "failed", backup_id: str | None = None,
               error: str | None = None, **extra_headers: str):
        """Audit this attempt as turned away, then answer `status`."""
        audit.record(actor=actor, outcome=outcome, started=started, backup_id=backup_id, status=status,
                     error=error or message, **facts)
        api_abort(status, message, **extra_headers)

    progress_id = request.args.get("progress_id")
    if progress_id is not None and not BACKUP_ID.fullmatch(progress_id):
        if request.method == "HEAD":
            api_abort(400, BAD_BACKUP_ID)
        refuse(400, BAD_BACKUP_ID)
    if request.method == "HEAD":
        return Response(status=200, headers=headers, content_type="application/gzip")

    try:
        record = state.registry.try_begin(filename, actor, progress_id)
    except BackupIdInUse:
        refuse(409, "This progress_id belongs to another backup; choose a new random one for each download.")
    if record is None:
        message = (f"{state.settings.max_concurrent} backup(s) already running (BACKUP_MAX_CONCURRENT); "
                   f"try again when it has finished.")
        if progress_id is not None:  # the page that chose the id cannot read this status: it polls for it
            state.registry.refused(progress_id, filename, actor, 429, message)
        refuse(429, message, "refused", progress_id, "concurrency limit reached", Retry_After=RETRY_AFTER_BUSY_S)
    audit.started(actor=actor, backup_id=record.id, started=started, **facts)
    try:
        dump, _, _ = open_dump(state.settings, state.pg_dumps,
                               application_name=record.application_name, progress=record.progress)
    except CannotDump as exc:
        status = _status_for(exc.kind)
        state.registry.end(record, status=status, error=exc.message)
        extra = {"Retry_After": RETRY_AFTER_LOCKED_S} if exc.kind == LOCKED else {}
        refuse(status, exc.message, "refused", record.id, **extra)
    except BaseException:
        state.registry.end(record)
        raise
    body = StreamingBackup(dump, record, state, facts)
    response = Response(body, status=200, headers=headers, content_type="application/gzip")
    response.headers["X-Backup-Id"] = record.id
    return response


@bp.get("/backups/<backup_id>")
@auth.login_required
def backup_progress(backup_id: str):
    """Progress of a running or recently finished backup attempt, by its id (see docs/api.md)."""
    state = service()
    if not BACKUP_ID.fullmatch(backup_id):
        api_abort(400, BAD_BACKUP_ID)
    record = state.registry.get(backup_id)
    if record is None:
        api_abort(404, "No running or recently finished backup has this id (finished attempts are kept for an hour).")
    running = state.registry.is_running(backup_id)
    if running and record.progress.outcome is None:
        record.watch.refresh(state.settings.conn, record.application_name)
    report = progress_report(record.id, record.filename, record.progress, running=running,
                             status=record.status, watch=record.watch)
    return jsonify(report), 200, {"Cache-Control": "no-store"}


@bp.get("/database")
@auth.login_required
def database():
    """What will be backed up: database, server, size, tables, the pg_dump that would run."""
    state = service()
    settings = state.settings
    ready = dump_readiness(lambda: server_facts(settings.conn, timeout_s=settings.connect_timeout_s), state.pg_dumps)
    if ready.facts_error is not None:
        api_abort(_status_for(ready.facts_error.kind), ready.facts_error.message)
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
        backup_name=settings.backup_name,
        compression=compressor_name(settings.gzip_level),
    )


@bp.get("/audit")
@auth.login_required
def recent_attempts():
    """The latest backup attempts, newest first (kept in memory; lost on restart)."""
    trail = service().audit
    return jsonify(entries=trail.recent(), kept=trail.keep, note=MEMORY_NOTE)
