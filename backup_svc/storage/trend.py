"""The stored backups' trend as the dashboard draws it and `GET /api/v1/stored` gives it: size and rows
per backup over the last 90 days (at most the 60 newest), each marked with whether the current
retention keeps it and whether a shrink alarm holds it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from backup_svc.timefmt import iso_utc

from .catalog import CatalogEntry
from .holds import Hold, active_holds
from .retention import RetentionPolicy, apply_retention, with_holds

TREND_DAYS = 90
TREND_MAX_POINTS = 60
KEEP_ALL = "no BACKUP_RETENTION: every backup is kept"


def retention_marks(
    entries: Sequence[CatalogEntry], policy: RetentionPolicy | None, held: set[str]
) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """name → (kept, why) under the current retention and holds: the same rules prune applies."""
    if policy is None:
        return {e.backup.name: (True, (KEEP_ALL,)) for e in entries}
    decisions = with_holds(apply_retention([e.backup for e in entries], policy), held)
    return {d.backup.name: (d.keep, d.reasons) for d in decisions}


def trend(
    entries: Sequence[CatalogEntry], policy: RetentionPolicy | None, holds: Sequence[Hold], now: datetime
) -> dict:
    """The trend: points oldest first (name, time, size, sql_bytes, rows, kept, kept_by, held, shrank)."""
    held = active_holds(holds)
    shrank = {h.finding.name: h.finding.drop_percent for h in holds if h.active}
    marks = retention_marks(entries, policy, held)
    since = now - timedelta(days=TREND_DAYS)
    recent = [e for e in entries if e.backup.time >= since][:TREND_MAX_POINTS]  # entries: newest first
    points = []
    for entry in reversed(recent):
        name = entry.backup.name
        kept, reasons = marks.get(name, (True, ()))
        points.append(
            {
                "name": name,
                "time": iso_utc(entry.backup.time.timestamp()),
                "size": entry.backup.size,
                "sql_bytes": entry.sql_bytes,
                "rows": entry.rows,
                "kept": kept,
                "kept_by": list(reasons),
                "held": name in held,
                "shrank_percent": round(shrank[name], 1) if name in shrank else None,
            }
        )
    return {"days": TREND_DAYS, "max_points": TREND_MAX_POINTS, "points": points}
