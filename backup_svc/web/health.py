"""Unauthenticated probes: liveness (`/healthz`) and readiness (`/readyz`)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backup_svc.pg.readiness import dump_readiness
from backup_svc.web.errors import error_response
from backup_svc.web.state import service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process answers; touches no database."""
    return Response("ok\n", mimetype="text/plain")


# What anyone may learn: ready or not, and which of the two conditions failed. The details (host,
# user, versions, libpq's own words) are for authenticated callers: GET /api/v1/database, `check`.
NOT_READY_DATABASE = "Not ready: the database cannot be reached or refuses the connection."
NOT_READY_PG_DUMP = "Not ready: no installed pg_dump can dump the database's server version."
DETAILS = " Details: GET /api/v1/database (authenticated) or `backup-svc check`."


@bp.get("/readyz")
def readyz():
    """200 when the database answers and an installed pg_dump can dump it; 503 with a generic reason otherwise.

    The database check is cached and refreshed in the background (BackupService.readiness): a loop
    on this costs at most one connection per READINESS_TTL_S, and no caller waits on the database.
    """
    state = service()
    ready = dump_readiness(state.readiness.get, state.pg_dumps)
    if ready.facts_error is not None:
        return error_response(503, NOT_READY_DATABASE + DETAILS)
    if ready.pg_dump_error is not None:
        return error_response(503, NOT_READY_PG_DUMP + DETAILS)
    return jsonify(status="ready")
