"""The audit trail: one JSON log line per backup attempt, the latest ones in memory, and recording refusals."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

from flask import request

from backup_svc.timefmt import iso_utc
from backup_svc.web.proxy import client_address

KEEP = 50
DENIED = "denied"
# The endpoints whose refusals are audited (method, event): everything that hands out or makes a backup.
AUDITED_ENDPOINTS = {"api.backup": ("GET", "backup"), "stored.start": ("POST", "stored-backup"),
                     "stored.download": ("GET", "stored-download")}
MAX_USER_AGENT_CHARS = 256

audit_log = logging.getLogger("backup_svc.audit")


class AuditTrail:
    """Writes each backup attempt to the `backup_svc.audit` log and keeps the latest `keep` of them.

    Attempts turned away at the door (`denied`: credentials, throttle, another site) are kept apart,
    counted per client, minute and status, also at most `keep` of them: anyone can cause those,
    and a flood of them must not push real backups out of memory. Every one is still a log line.
    Entries hold who, from where, what happened and how much; never a credential, a link's
    signature or a database password (error messages are scrubbed before they get here).
    """

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=keep)
        # (client, minute, status) -> the first such refusal, with a `count`; oldest first
        self._denied: OrderedDict[tuple, dict] = OrderedDict()
        self.version = 0  # counts recorded attempts: a page showing them knows when to render again
        # The durable history (history/hooks.py), when there is one: told of each attempt, and of each
        # minute's refusal aggregate once that minute is over (so a flood is one event per client and minute).
        self.sink: Callable[[dict], None] | None = None
        self._emitted: set[tuple] = set()

    def record(self, *, actor: str | None, client: str | None, user_agent: str | None, outcome: str,
               started: float, status: int | None = None, backup_id: str | None = None, gzip_bytes: int = 0,
               sql_bytes: int = 0, error: str | None = None, sha256: str | None = None, event: str = "backup",
               name: str | None = None) -> dict:
        """Log one attempt as a JSON line, remember it, and return the entry.

        `event`: "backup" (a download), "stored-backup" (into object storage) or "stored-download" (a
        presigned link to a stored backup, `name`). `sha256` is given only for a completed backup.
        """
        entry = {
            "event": event, "time": iso_utc(started, "milliseconds"), "id": backup_id, "actor": actor, "client": client,
            "user_agent": user_agent, "outcome": outcome, "status": status, "bytes": gzip_bytes,
            "sql_bytes": sql_bytes, "duration_s": round(max(0.0, time.time() - started), 3), "error": error,
            "sha256": sha256, "name": name,
        }
        audit_log.info(json.dumps(entry))
        with self._lock:
            if outcome == DENIED:
                self._count_denied(entry)
            else:
                self._entries.append(entry)
            self.version += 1
        if self.sink is not None and outcome != DENIED:
            self.sink(dict(entry))
        self.flush_refusals(entry["time"][:16])
        return entry

    def flush_refusals(self, before_minute: str | None = None) -> None:
        """Hand the refusal aggregates of minutes before `before_minute` (`YYYY-MM-DDTHH:MM`; None: all,
        at shutdown) to the sink, each once. Called after each entry and by the history's background tick."""
        if self.sink is None:
            return
        with self._lock:
            closed = [(key, dict(kept)) for key, kept in self._denied.items() if key not in self._emitted
                      and (before_minute is None or key[1] < before_minute)]
            self._emitted.update(key for key, _ in closed)
            self._emitted &= set(self._denied)
        for _, aggregate in closed:
            self.sink(aggregate)

    def open_refusals(self) -> list[dict]:
        """The refusal aggregates not yet handed to the sink (this minute's), for the merged view."""
        with self._lock:
            return [dict(kept) for key, kept in self._denied.items() if key not in self._emitted]

    def _count_denied(self, entry: dict) -> None:
        """Add a refusal at the door to its client's entry for that minute and status; hold the lock."""
        key = (entry["client"], entry["time"][:16], entry["status"])  # time[:16]: YYYY-MM-DDTHH:MM
        kept = self._denied.get(key)
        if kept is not None:
            kept["count"] += 1
            return
        self._denied[key] = {**entry, "count": 1}
        while len(self._denied) > self.keep:
            self._denied.popitem(last=False)

    def started(self, *, actor: str | None, client: str | None, user_agent: str | None, backup_id: str,
                started: float) -> None:
        """Log that a download got its slot and is starting pg_dump (event `backup_started`).

        Its outcome follows in a `backup` line; a worker killed mid-dump leaves only this one, so a
        reader of the log still sees the attempt. Not kept in memory: the page lists running dumps itself.
        """
        audit_log.info(json.dumps({"event": "backup_started", "time": iso_utc(started, "milliseconds"),
                                   "id": backup_id, "actor": actor, "client": client, "user_agent": user_agent}))

    def recent(self) -> list[dict]:
        """The remembered attempts (backups, and refusals at the door counted per client and minute), latest first."""
        with self._lock:
            entries = [dict(entry) for entry in self._entries] + [dict(entry) for entry in self._denied.values()]
        # Entries are recorded when an attempt ends, so a long download lands after quicker
        # attempts that started later; people read the list by start time.
        return sorted(entries, key=lambda entry: entry["time"], reverse=True)


def request_facts() -> dict[str, str | None]:
    """Where the current request came from, for `AuditTrail.record` (read while the request is live)."""
    user_agent = request.headers.get("User-Agent")
    return {"client": client_address(), "user_agent": user_agent[:MAX_USER_AGENT_CHARS] if user_agent else None}
