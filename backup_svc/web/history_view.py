"""The merged history as the web app shows it: recent attempts, the last stored backup runs, drills and
notification problems from every process (this one's not-yet-written events included), and
`GET /api/v1/audit`, which pages backwards in time."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, jsonify, request

from backup_svc.history import summary
from backup_svc.history.event import AUDIT, OUTCOME
from backup_svc.history.trail import MAX_LIMIT, parse_time
from backup_svc.timefmt import utc_now
from backup_svc.web.auth import auth
from backup_svc.web.errors import api_abort
from backup_svc.web.state import BackupService, service

bp = Blueprint("history", __name__, url_prefix="/api/v1")

DEFAULT_LIMIT = 50
# How many attempts the dashboard lists ("Recent backup attempts"; refusals at most half of them).
RECENT_ATTEMPTS = 10
KINDS = {"audit": (AUDIT,), "outcome": (OUTCOME,), "all": (AUDIT, OUTCOME)}


def recent_attempts(state: BackupService, limit: int) -> list[dict]:
    """The dashboard's "Recent backup attempts": merged history plus this minute's refusal counts."""
    return summary.recent_attempts(state.history.cached(), state.audit.open_refusals(), limit)


def stored_runs(state: BackupService) -> dict:
    """last_run / last_failure / last_scheduled of stored backups, whichever process ran them."""
    return summary.stored_runs(state.history.cached())


def notify_status(state: BackupService) -> dict:
    """The Reporter's status with drills and the last delivery problem read from every process's history."""
    status = state.reporter.status()
    events = state.history.cached()
    found = summary.notify_status(events)
    staleness = state.reporter.staleness
    if staleness is not None:  # judged against the same history the page shows (the last run, its failure)
        status["staleness"] = staleness.seen_with(
            summary.last_scheduled_failure(events), utc_now(), state.reporter.staleness_alarm.up_since
        ).as_dict()
    for key in ("last_drill", "last_proven_restorable"):
        status[key] = found[key] or status[key]
    status["notifications"] = {
        **status["notifications"],
        "last_problem": found["last_problem"] or status["notifications"]["last_problem"],
    }
    return status


def fingerprint(state: BackupService) -> tuple:
    """Changes whenever what the merged history shows may have changed (for the page's render cache)."""
    reader = state.history.reader
    return (
        state.history.version,
        state.audit.version,
        reader.refreshed_at if reader else None,
        str(state.history.status().get("problem")),
    )


@bp.get("/audit")
@auth.login_required
def audit():
    """Audit entries (or outcomes: `?kind=outcome|all`), newest first; `?before=<ISO time>&limit=<n>` pages back."""
    state = service()
    kind = request.args.get("kind", "audit")
    if kind not in KINDS:
        api_abort(400, "kind must be audit, outcome or all.")
    try:
        limit = int(request.args.get("limit", DEFAULT_LIMIT))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        api_abort(400, f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    before: datetime | None = None
    if request.args.get("before"):
        try:
            before = parse_time(request.args["before"])
        except ValueError:
            api_abort(400, "before must be an ISO 8601 time, e.g. 2026-12-04T10:00:00Z.")
    kinds = KINDS[kind]
    events, error = state.history.page(before, limit, lambda e: e.body.get("kind") in kinds, tag=kind)
    entries = [{**summary.entry_of(e), "kind": e.body.get("kind"), "type": e.body.get("type")} for e in events]
    if before is None and kind != "outcome":  # this minute's refusals, not yet an event of their own
        process = state.history.chain.process
        entries = sorted(
            entries
            + [{**r, "process": process, "kind": AUDIT, "type": r.get("event")} for r in state.audit.open_refusals()],
            key=lambda e: e.get("time") or "",
            reverse=True,
        )[:limit]
    status = state.history.status()
    oldest = (entries[-1].get("recorded") or entries[-1].get("time")) if entries else None
    # What the dashboard lists, by the page's own rule, for its refresh of the table.
    shown = recent_attempts(state, RECENT_ATTEMPTS) if before is None and kind != "outcome" else None
    return jsonify(
        entries=entries,
        shown=shown,
        limit=limit,
        next_before=oldest if len(entries) == limit else None,
        complete=error is None,
        error=error,
        note=status["note"],
        history=status,
    )
