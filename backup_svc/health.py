"""Unauthenticated probes: liveness (`/healthz`) and readiness (`/readyz`)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .database import server_facts
from .diagnose import CannotDump
from .errors import error_response
from .service import choose_pg_dump

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process answers; touches no database."""
    return Response("ok\n", mimetype="text/plain", headers={"Cache-Control": "no-store"})


@bp.get("/readyz")
def readyz():
    """200 when the database answers and an installed pg_dump can dump it; 503 with the reason otherwise."""
    service = current_app.extensions["backup_svc"]
    try:
        facts = server_facts(service.settings.conn, timeout_s=min(service.settings.connect_timeout_s, 5))
        chosen = choose_pg_dump(facts, service.pg_dumps)
    except CannotDump as exc:
        return error_response(503, exc.message)
    return jsonify(status="ready", server_version=facts.version, pg_dump_version=chosen.version)
