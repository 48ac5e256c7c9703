"""Unauthenticated probes: liveness (`/healthz`) and readiness (`/readyz`)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from backup_svc.pg.facts import server_facts
from backup_svc.pg.readiness import dump_readiness
from backup_svc.web.errors import error_response
from backup_svc.web.state import service

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process answers; touches no database."""
    return Response("ok\n", mimetype="text/plain", headers={"Cache-Control": "no-store"})


@bp.get("/readyz")
def readyz():
    """200 when the database answers and an installed pg_dump can dump it; 503 with the reason otherwise."""
    settings = service().settings
    ready = dump_readiness(lambda: server_facts(settings.conn, timeout_s=min(settings.connect_timeout_s, 5)),
                           service().pg_dumps)
    if ready.problem is not None:
        return error_response(503, ready.problem.message)
    return jsonify(status="ready", server_version=ready.facts.version, pg_dump_version=ready.pg_dump.version)
