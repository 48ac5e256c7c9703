"""The shape of stored backups — size, SQL bytes, rows — and the one rule that says a backup shrank.

A backup that succeeds can still be a disaster: a table emptied by a bad migration is dumped, stored and
verified like any other. `detect_shrink` compares a new backup's total rows (its size where rows are
unknown, e.g. encrypted backups) with the median of the previous ones (BACKUP_SHRINK_ALERT). Pure
functions: the callers read the metadata (take.py, catalog.py) and tell people (notify/).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from backup_svc.dump.rowcount import RowCounts, counts_from_metadata

DEFAULT_SHRINK_PERCENT = 30.0
# "the median of the previous 7": a week of nightly backups, so one odd night does not move it.
WINDOW = 7
# Fewer earlier backups than this and a median says little: no alarm yet (a new service's first days).
MIN_HISTORY = 3
# The tables named in a warning: the ones that lost the most rows.
TOP_TABLES = 5


def parse_shrink_alert(text: str) -> float | None:
    """BACKUP_SHRINK_ALERT: "" → 30, "off" → None (disabled), "25" / "12.5" → that percent.

    ValueError says what is wrong (a number from 1 to 99, or off)."""
    text = text.strip().lower()
    if not text:
        return DEFAULT_SHRINK_PERCENT
    if text in ("off", "false", "no", "0"):
        return None
    try:
        percent = float(text.rstrip("%").strip())
    except ValueError:
        raise ValueError(f"must be a percent from 1 to 99 or 'off', got {text[:20]!r}") from None
    if not 1 <= percent <= 99:
        raise ValueError(f"must be a percent from 1 to 99 or 'off', got {text[:20]!r}")
    return percent


@dataclass(frozen=True)
class BackupShape:
    """What a stored backup's record says about its size: gzip bytes, SQL bytes, rows, tables."""

    name: str
    time: datetime
    size: int
    sql_bytes: int | None = None
    rows: int | None = None
    tables: int | None = None
    per_table: RowCounts | None = field(default=None, compare=False, repr=False)


def shape_of(name: str, time: datetime, size: int, metadata: Mapping[str, str]) -> BackupShape:
    """A backup's shape from its object's user metadata (as take.py records it)."""
    per_table, rows, tables = counts_from_metadata(dict(metadata))
    try:
        sql_bytes = int(metadata["sql-bytes"]) if "sql-bytes" in metadata else None
    except ValueError:
        sql_bytes = None
    return BackupShape(
        name=name, time=time, size=size, sql_bytes=sql_bytes, rows=rows, tables=tables, per_table=per_table
    )


@dataclass(frozen=True)
class ShrunkTable:
    """One table with fewer rows than in the backup before the drop."""

    table: str  # "schema.table"
    before: int
    after: int

    def as_json(self) -> dict:
        return {"table": self.table, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class ShrinkFinding:
    """A backup that fell more than the threshold below the median of the ones before it."""

    name: str  # the backup that shrank
    time: datetime
    measure: str  # "rows" or "size" (bytes of the stored object)
    value: int
    median: float
    drop_percent: float
    threshold: float
    compared: int  # how many earlier backups the median is of
    held: str  # the last backup before the drop: retention keeps it until acknowledged
    held_value: int | None = None
    tables: tuple[ShrunkTable, ...] = ()

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "time": self.time.isoformat(),
            "measure": self.measure,
            "value": self.value,
            "median": self.median,
            "drop_percent": round(self.drop_percent, 1),
            "threshold": self.threshold,
            "compared": self.compared,
            "held": self.held,
            "held_value": self.held_value,
            "tables": [t.as_json() for t in self.tables],
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "ShrinkFinding":
        tables = tuple(ShrunkTable(t["table"], int(t["before"]), int(t["after"])) for t in data.get("tables", []))
        return cls(
            name=data["name"],
            time=datetime.fromisoformat(data["time"]),
            measure=data["measure"],
            value=int(data["value"]),
            median=float(data["median"]),
            drop_percent=float(data["drop_percent"]),
            threshold=float(data["threshold"]),
            compared=int(data["compared"]),
            held=data["held"],
            held_value=data.get("held_value"),
            tables=tables,
        )


def detect_shrink(
    new: BackupShape, earlier: list[BackupShape], threshold: float | None, *, since: datetime | None = None
) -> ShrinkFinding | None:
    """The finding when `new` fell more than `threshold` percent below the median of the WINDOW backups
    before it (`earlier`, any order); None when it did not, when disabled, or with too little history.

    `since` is the time of the backup that raised the latest alarm: only it and later ones are the
    baseline, so the backups after a drop are compared with the new level (one is enough), not
    alarmed about again and again. Rows are compared when `new` and enough of the window have them;
    else sizes.
    """
    if threshold is None:
        return None
    window = sorted(
        (b for b in earlier if b.time < new.time and (since is None or b.time >= since)),
        key=lambda b: b.time,
        reverse=True,
    )[:WINDOW]
    needed = 1 if since is not None else MIN_HISTORY
    if len(window) < needed:
        return None
    with_rows = [b.rows for b in window if b.rows is not None]
    if new.rows is not None and len(with_rows) >= needed:
        measure, value, values = "rows", new.rows, with_rows
    else:
        measure, value, values = "size", new.size, [b.size for b in window]
    median = float(statistics.median(values))
    if median <= 0:
        return None
    drop = (median - value) / median * 100
    if drop <= threshold:
        return None
    before = window[0]
    return ShrinkFinding(
        name=new.name,
        time=new.time,
        measure=measure,
        value=value,
        median=median,
        drop_percent=drop,
        threshold=threshold,
        compared=len(values),
        held=before.name,
        held_value=before.rows if measure == "rows" else before.size,
        tables=shrunk_tables(before.per_table, new.per_table),
    )


def shrunk_tables(before: RowCounts | None, after: RowCounts | None, top: int = TOP_TABLES) -> tuple[ShrunkTable, ...]:
    """The `top` tables that lost the most rows from `before` to `after` (a table gone counts as 0);
    () when either side has no per-table counts (encrypted, or too many tables to record)."""
    if not before or after is None:
        return ()
    lost = [(n - after.get(t, 0), t, n) for t, n in before.items() if after.get(t, 0) < n]
    lost.sort(key=lambda item: (-item[0], item[1]))
    return tuple(
        ShrunkTable(f"{schema}.{table}", n, after.get((schema, table), 0)) for _, (schema, table), n in lost[:top]
    )
