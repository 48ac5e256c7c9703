"""The audit trail: one JSON log line per backup attempt, the latest ones in memory, and recording refusals."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

from flask import request

from backup_svc.clientaddress import address_key
from backup_svc.timefmt import iso_utc
from backup_svc.web.proxy import client_address

KEEP = 50
DENIED = "denied"
# Refusals at the door are counted per client (an IPv6 /64) and minute and status; in one minute at
# most this many clients get an entry of their own, the rest are counted together as OTHERS.
DENIED_CLIENTS_PER_MINUTE = 5
OTHERS = "others"
# Refusals logged one line each per minute; the rest are counted, and logged as one `denied_summary`
# line per client once the minute is over: a flood cannot make the log platform drop real lines.
DENIED_LINES_PER_MINUTE = 60
# The endpoints whose refusals are audited (method, event): everything that hands out or makes a backup.
AUDITED_ENDPOINTS = {
    "api.backup": ("GET", "backup"),
    "stored.start": ("POST", "stored-backup"),
    "stored.download": ("GET", "stored-download"),
    "holds.acknowledge": ("POST", "shrink-acknowledged"),
    "restores.start": ("POST", "restore"),
    "restores.cancel": ("DELETE", "restore-cancel"),
    "restores.undo": ("POST", "restore-undo"),
    "restores.drop": ("DELETE", "restore-drop"),
}
MAX_USER_AGENT_CHARS = 256

audit_log = logging.getLogger("backup_svc.audit")


class AuditTrail:
    """Writes each backup attempt to the `backup_svc.audit` log and keeps the latest `keep` of them.

    Attempts turned away at the door (`denied`: credentials, throttle, another site) are kept apart,
    counted per client (an IPv6 /64), minute and status — at most DENIED_CLIENTS_PER_MINUTE clients
    a minute, the rest together — also at most `keep` of them: anyone can cause those, and a flood
    of them must not push real backups out of memory or off the dashboard (history/summary.py's
    `recent_attempts`). The first
    DENIED_LINES_PER_MINUTE of a minute are log lines; the rest are summed up per client after it.
    Entries hold who, from where, what happened and how much; never a credential, a link's
    signature or a database password (error messages are scrubbed before they get here).
    """

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=keep)
        # (client, minute, status) -> the first such refusal, with a `count`; oldest first
        self._denied: OrderedDict[tuple, dict] = OrderedDict()
        self._minute = ""  # the minute the counts below are for
        self._clients_this_minute: set[str] = set()
        self._lines_this_minute = 0
        self._unlogged: dict[tuple, dict] = {}  # (client, status) -> a summary of refusals not logged
        self._flush_timer: threading.Timer | None = None
        self.version = 0  # counts recorded attempts: a page showing them knows when to render again
        # The durable history (history/hooks.py), when there is one: told of each attempt, and of each
        # minute's refusal aggregate once that minute is over (so a flood is one event per client and minute).
        self.sink: Callable[[dict], None] | None = None
        self._emitted: set[tuple] = set()

    def record(
        self,
        *,
        actor: str | None,
        client: str | None,
        user_agent: str | None,
        outcome: str,
        started: float,
        status: int | None = None,
        backup_id: str | None = None,
        gzip_bytes: int = 0,
        sql_bytes: int = 0,
        rows: int | None = None,
        error: str | None = None,
        sha256: str | None = None,
        event: str = "backup",
        name: str | None = None,
        details: dict | None = None,
    ) -> dict:
        """Log one attempt as a JSON line, remember it, and return the entry.

        `event`: "backup" (a download), "stored-backup" (into object storage), "stored-download" (a
        presigned link to a stored backup, `name`) or "shrink-acknowledged" (a shrink alarm's hold on
        `name` released). `sha256` is given only for a completed backup.
        """
        entry = {
            "event": event,
            "time": iso_utc(started, "milliseconds"),
            "id": backup_id,
            "actor": actor,
            "client": client,
            "user_agent": user_agent,
            "outcome": outcome,
            "status": status,
            "bytes": gzip_bytes,
            "sql_bytes": sql_bytes,
            "rows": rows,
            "duration_s": round(max(0.0, time.time() - started), 3),
            "error": error,
            "sha256": sha256,
            "name": name,
            **(details or {}),
        }
        if outcome != DENIED:
            audit_log.info(json.dumps(entry))
            with self._lock:
                self._entries.append(entry)
                self.version += 1
            if self.sink is not None:
                self.sink(dict(entry))
            self.flush_refusals(entry["time"][:16])
            return entry
        with self._lock:
            self._new_minute(entry["time"][:16])  # time[:16]: YYYY-MM-DDTHH:MM
            client = self._client_of(entry["client"])
            self._count_denied(entry, client)
            logged = self._lines_this_minute < DENIED_LINES_PER_MINUTE
            if logged:
                self._lines_this_minute += 1
            else:
                self._count_unlogged(entry, client)
            self.version += 1
        if logged:
            audit_log.info(json.dumps(entry))
        self.flush_refusals(entry["time"][:16])
        return entry

    def flush_refusals(self, before_minute: str | None = None) -> None:
        """Hand the refusal aggregates of minutes before `before_minute` (`YYYY-MM-DDTHH:MM`; None: all,
        at shutdown) to the sink, each once. Called after each entry and by the history's background tick."""
        if self.sink is None:
            return
        with self._lock:
            closed = [
                (key, dict(kept))
                for key, kept in self._denied.items()
                if key not in self._emitted and (before_minute is None or key[1] < before_minute)
            ]
            self._emitted.update(key for key, _ in closed)
            self._emitted &= set(self._denied)
        for _, aggregate in closed:
            self.sink(aggregate)

    def open_refusals(self) -> list[dict]:
        """The refusal aggregates not yet handed to the sink (this minute's), for the merged view."""
        with self._lock:
            return [dict(kept) for key, kept in self._denied.items() if key not in self._emitted]

    def _client_of(self, address: str | None) -> str:
        """The refusal's client (its /64 for IPv6), or OTHERS past this minute's clients; hold the lock."""
        client = address_key(address)
        if client not in self._clients_this_minute and len(self._clients_this_minute) >= DENIED_CLIENTS_PER_MINUTE:
            return OTHERS
        self._clients_this_minute.add(client)
        return client

    def _count_denied(self, entry: dict, client: str) -> None:
        """Add a refusal at the door to its client's entry for that minute and status; hold the lock."""
        status = None if client == OTHERS else entry["status"]
        key = (client, self._minute, status)
        kept = self._denied.get(key)
        if kept is not None:
            kept["count"] += 1
            return
        self._denied[key] = {**entry, "client": client, "status": status, "count": 1}
        while len(self._denied) > self.keep:
            self._denied.popitem(last=False)

    def _count_unlogged(self, entry: dict, client: str) -> None:
        summary = self._unlogged.setdefault(
            (client, entry["status"]),
            {
                "event": "denied_summary",
                "minute": self._minute,
                "of": entry["event"],
                "client": client,
                "status": entry["status"],
                "outcome": DENIED,
                "count": 0,
            },
        )
        summary["count"] += 1
        if self._flush_timer is None:  # log the summaries soon after the minute ends, flood or not
            self._flush_timer = threading.Timer(61 - time.time() % 60, self.flush)
            self._flush_timer.daemon = True
            self._flush_timer.start()

    def _new_minute(self, minute: str) -> None:
        """Start counting a new minute's refusals, logging the last one's summaries; hold the lock."""
        if minute == self._minute:
            return
        for summary in self._unlogged.values():
            audit_log.info(json.dumps(summary))
        self._unlogged.clear()
        self._minute, self._clients_this_minute, self._lines_this_minute = minute, set(), 0

    def flush(self) -> None:
        """Log the summaries of a minute that is over (called by a timer; also at the next refusal)."""
        with self._lock:
            self._flush_timer = None
            minute = iso_utc(time.time(), "milliseconds")[:16]
            if minute != self._minute:
                self._new_minute(minute)

    def started(
        self, *, actor: str | None, client: str | None, user_agent: str | None, backup_id: str, started: float
    ) -> None:
        """Log that a download got its slot and is starting pg_dump (event `backup_started`).

        Its outcome follows in a `backup` line; a worker killed mid-dump leaves only this one, so a
        reader of the log still sees the attempt. Not kept in memory: the page lists running dumps itself.
        """
        audit_log.info(
            json.dumps(
                {
                    "event": "backup_started",
                    "time": iso_utc(started, "milliseconds"),
                    "id": backup_id,
                    "actor": actor,
                    "client": client,
                    "user_agent": user_agent,
                }
            )
        )

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
