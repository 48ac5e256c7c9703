"""What the dashboard and the API read off the merged history: recent attempts, the last stored backup
run and failure, drills, the last notification problem, whether a staleness alarm already went out.

Pure functions of a list of events (newest first), so every process reads them the same way.
"""

from __future__ import annotations

from typing import Iterable

from .event import AUDIT, OUTCOME, STORED_RUN, UPLOAD_TRIGGER, HistoryEvent

DENIED = "denied"
FAILED_RUNS = ("failed", "refused")


def entry_of(event: HistoryEvent) -> dict:
    """An event's data with where it came from: which process and run, and its time."""
    return {**event.body.get("data", {}), "process": event.body.get("process"), "recorded": event.time}


def audit_entries(events: Iterable[HistoryEvent]) -> list[dict]:
    """The audit entries among `events`, newest first (attempts and refusal aggregates alike)."""
    return [entry_of(e) for e in events if e.body.get("kind") == AUDIT]


def recent_attempts(events: list[HistoryEvent], open_refusals: list[dict], limit: int) -> list[dict]:
    """What "Recent backup attempts" lists: the newest attempts and refusal aggregates (the history's and
    this minute's, not yet an event), by start time — refusals at most half of `limit`, so however many
    clients anyone makes refuse, the real attempts stay on the list."""
    entries = audit_entries(events)
    by_time = lambda e: e.get("time") or ""  # noqa: E731
    refusals = sorted([e for e in entries if e.get("outcome") == DENIED] + open_refusals, key=by_time, reverse=True)[
        : limit // 2
    ]
    attempts = [e for e in entries if e.get("outcome") != DENIED][: limit - len(refusals)]
    return sorted(attempts + refusals, key=by_time, reverse=True)


def newest(events: Iterable[HistoryEvent], type_: str, test=lambda data: True) -> dict | None:
    """The data of the newest outcome of `type_` that passes `test`, with its process; None if there is none."""
    for event in events:
        body = event.body
        if body.get("kind") == OUTCOME and body.get("type") == type_ and test(body.get("data", {})):
            return entry_of(event)
    return None


def stored_runs(events: list[HistoryEvent]) -> dict:
    """The last stored backup run, the last failed one, and the last one that ran on a schedule (by `serve`'s
    schedule or by the `upload` command, which is what a cron service runs)."""
    return {
        "last_run": newest(events, STORED_RUN),
        "last_failure": newest(events, STORED_RUN, lambda d: d.get("outcome") in FAILED_RUNS),
        "last_scheduled": newest(events, STORED_RUN, lambda d: d.get("trigger") in ("schedule", UPLOAD_TRIGGER)),
    }


def last_scheduled_failure(events: list[HistoryEvent]) -> str | None:
    """Why the last scheduled run (serve's schedule or a cron service's `upload`) failed; None when it did not."""
    run = stored_runs(events)["last_scheduled"]
    if run is not None and run.get("outcome") in FAILED_RUNS:
        return run.get("error") or "no reason was given"
    return None


def notify_status(events: list[HistoryEvent]) -> dict:
    """Drills and delivery problems as the Reporter's status() has them, from every process's history."""
    return {
        "last_drill": newest(events, "drill"),
        "last_proven_restorable": newest(events, "drill", lambda d: d.get("outcome") == "ok"),
        "last_problem": newest(events, "notify-problem"),
    }


def alarm_sent_since(events: Iterable[HistoryEvent], since_iso: str | None) -> bool:
    """Whether a staleness alarm is in the history after `since_iso` (None: ever): the episode's one alarm."""
    alarm = newest(events, "stale")
    return alarm is not None and (since_iso is None or (alarm.get("recorded") or "") > since_iso)
