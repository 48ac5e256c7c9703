"""What every channel reports (an Event) and how URLs are shown without their secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from backup_svc.timefmt import iso

BACKUP, DRILL, STALE, TEST, RESTORE = "backup", "drill", "stale", "test", "restore"
OK, FAILED = "ok", "failed"


class DeliveryFailed(Exception):
    """One attempt to deliver a notification failed; the message is safe to log and show.

    `retry` is False when trying again cannot help (e.g. the receiver answered 404).
    """

    def __init__(self, message: str, *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


def safe_url(url: str) -> str:
    """`scheme://host[:port]/…`: a webhook's or ping URL's path is its secret, like a password in it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    tail = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def human_size(size: int | None) -> str:
    """1536 → '1.5 KiB'."""
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def utc_text(when: datetime | None, *, seconds: bool = False) -> str:
    """'2026-11-28 19:30 UTC' ('2026-11-28 19:30:05 UTC' with `seconds`)."""
    if when is None:
        return "unknown time"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Event:
    """One outcome worth telling about: a stored backup, a restore drill, or backups gone stale.

    `details` carries what is particular to the kind (a drill's row counts and seconds, how old the
    newest backup is); `error` is one secret-free line, set when `outcome` is `failed`.
    """

    kind: str  # BACKUP, DRILL, STALE or TEST (notify-test)
    outcome: str  # OK or FAILED
    database: str
    name: str | None = None  # the stored object's name
    bytes: int | None = None
    sha256: str | None = None
    error: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome != OK

    @property
    def when(self) -> datetime | None:
        return self.finished or self.started

    def headline(self) -> str:
        """One line for a chat message or a subject: what, which database, how it went, when."""
        at = utc_text(self.when)
        if self.kind == TEST:
            return f"Test notification from backup_svc for {self.database} at {at}"
        if self.kind == STALE and self.details.get("last_failed"):
            return f"Backups of {self.database} are failing: the last scheduled backup failed"
        if self.kind == STALE:
            return (
                f"Backups of {self.database} are stale: no successful stored backup since "
                f"{utc_text(self.details.get('newest')) if self.details.get('newest') else 'the service started'}"
            )
        if self.kind == RESTORE:
            return (
                f"{self.details.get('action', 'Restore').capitalize()} of {self.database} "
                f"{'FAILED' if self.failed else 'done'} at {at}"
            )
        what = "Restore drill" if self.kind == DRILL else "Backup"
        how = "FAILED" if self.failed else "ok"
        return f"{what} of {self.database} {how} at {at}"

    def reason(self) -> str:
        """The outcome in plain words (a few sentences)."""
        if self.kind == TEST:
            return "Sent by `python -m backup_svc notify-test`: if you read this, this channel works."
        if self.kind == STALE and self.details.get("last_failed"):
            return f"The last scheduled backup failed: {self.details['last_failed']}."
        if self.kind == STALE:
            newest = self.details.get("newest")
            interval = self.details.get("interval_s")
            since = f"the newest one is from {utc_text(newest)}" if newest else "there is none at all"
            every = f" The schedule expects one every {_duration(interval)}." if interval else ""
            return f"No successful stored backup is younger than 1.5 schedule intervals: {since}.{every}"
        if self.kind == RESTORE:
            return self.details.get("summary") or self.error or ""
        if self.kind == DRILL:
            if self.failed:
                return (
                    f"The stored backup {self.name or '(unknown)'} could not be proven restorable: "
                    f"{self.error or 'unknown error'}."
                )
            tables, rows = self.details.get("tables"), self.details.get("rows")
            return (
                f"The stored backup {self.name} was restored into a scratch database in "
                f"{self.details.get('seconds', 0):.1f} s; all {tables} tables hold the {rows} rows the "
                f"backup recorded. "
                + (
                    f"The scratch database {self.details.get('scratch_database')} could not be "
                    f"dropped: {self.details['scratch_left']}."
                    if self.details.get("scratch_left")
                    else "The scratch database was dropped afterwards."
                )
            )
        if self.failed:
            return f"The backup failed and nothing was stored for this run: {self.error or 'unknown error'}."
        return f"The backup was stored as {self.name} ({human_size(self.bytes)})."

    def advice(self) -> str:
        """What the reader should do now."""
        if self.kind == TEST:
            return "Nothing to do."
        if self.kind == RESTORE:
            return (
                "Nothing was changed that was not put back; read the dashboard's Restore section and the service log."
                if self.failed
                else "The replaced data is kept; the dashboard's Kept databases lists it."
            )
        if self.kind == STALE:
            return (
                "Scheduled backups have stopped or keep failing. Check that the service runs (GET /healthz), "
                "read its log, run `python -m backup_svc check`, then `python -m backup_svc upload` to store "
                "one now."
            )
        if self.kind == DRILL:
            if self.failed:
                return (
                    "Do not rely on this backup until a drill passes. Run `python -m backup_svc drill` to try "
                    "again and read the service log; `python -m backup_svc verify s3://<bucket>/<key>` checks "
                    "the object itself."
                )
            return "Nothing to do: this backup is proven restorable."
        if self.failed:
            return (
                "Earlier stored backups are untouched. Read the service log around this time, run "
                "`python -m backup_svc check` (connection, credentials, pg_dump), fix what it reports, then "
                "`python -m backup_svc upload` to store a backup now."
            )
        return "Nothing to do. `python -m backup_svc drill` proves the newest stored backup restores."

    def extra_facts(self) -> list[tuple[str, str]]:
        """(label, value) lines a kind adds to the mail's facts."""
        return []

    def text(self) -> str:
        """The short message chat services show (Slack `text`, Discord `content`)."""
        parts = [self.headline() + ".", self.reason()]
        if self.failed or self.kind in (STALE, RESTORE):
            parts.append(self.advice())
        return " ".join(parts)[:1900]  # Discord refuses content over 2000 characters

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        details = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.details.items()}
        text = self.text()
        return {
            "event": self.kind,
            "outcome": self.outcome,
            "database": self.database,
            "name": self.name,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "error": self.error,
            "started": iso(self.started),
            "finished": iso(self.finished),
            "details": details,
            "text": text,
            "content": text,
        }


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day" + ("s" if seconds != 86400 else "")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour" + ("s" if seconds != 3600 else "")
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
