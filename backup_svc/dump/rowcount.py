"""Row counts per table: counted from a backup's SQL, and recorded in a stored object's metadata.

The counting is the dump's own COPY scanner (dump/tabledata.py) with `count_rows`: a stored backup
counts as it is taken and records the result in the object's user metadata; a drill restores and
compares with that record, or counts the object's SQL itself when there is none.
"""

from __future__ import annotations

import json
from typing import Iterable

from backup_svc.dump.tabledata import TableDataScanner

# Object storage allows about 2 KiB of user metadata per object (the other entries take ~300 bytes):
# the per-table counts go there when they fit, the totals always do.
METADATA_BUDGET = 1400

RowCounts = dict[tuple[str, str], int]  # (schema, table) → rows


def count_rows(sql_chunks: Iterable[bytes]) -> RowCounts:
    """Every table's rows as the COPY data in `sql_chunks` holds them (one streaming pass)."""
    scanner = TableDataScanner(lambda _: None, lambda: None, count_rows=True)
    for chunk in sql_chunks:
        scanner.feed(chunk)
    return scanner.rows or {}


def total_rows(rows: RowCounts | None) -> int | None:
    """All tables' rows together; None when they were not counted."""
    return sum(rows.values()) if rows is not None else None


def counts_metadata(rows: RowCounts) -> dict[str, str]:
    """User-metadata entries recording row counts at dump time: `rows` and `tables` (totals), and
    `row-counts` (compact JSON `{"schema": {"table": rows}}`) when it fits."""
    meta = {"rows": str(total_rows(rows)), "tables": str(len(rows))}
    nested: dict[str, dict[str, int]] = {}
    for (schema, table), n in rows.items():
        nested.setdefault(schema, {})[table] = n
    # ensure_ascii: S3 metadata travels in HTTP headers, which carry ASCII only
    compact = json.dumps(nested, separators=(",", ":"), ensure_ascii=True)
    if len(compact) <= METADATA_BUDGET:
        meta["row-counts"] = compact
    return meta


def counts_from_metadata(meta: dict[str, str]) -> tuple[RowCounts | None, int | None, int | None]:
    """(per-table counts or None, total rows or None, number of tables or None) from user metadata."""

    def number(key: str) -> int | None:
        try:
            return int(meta[key])
        except (KeyError, ValueError):
            return None

    per_table = None
    try:
        loaded = json.loads(meta["row-counts"])
        per_table = {(schema, table): n for schema, tables in loaded.items() for table, n in tables.items()}
        if not all(isinstance(n, int) for n in per_table.values()):
            per_table = None
    except (KeyError, ValueError, AttributeError):
        per_table = None
    return per_table, number("rows"), number("tables")
