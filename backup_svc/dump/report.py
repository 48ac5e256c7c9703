"""The progress report of one backup attempt, as `GET /api/v1/backups/<id>` returns it (docs/api.md).

Pure computation over what the dump recorded (pipeline.DumpProgress) and what the database said
(progress.DumpWatch); no I/O.
"""
from __future__ import annotations

import time

from backup_svc.dump.pipeline import DumpProgress
from backup_svc.dump.watch import CopySample, DumpWatch, TableEstimate
from backup_svc.timefmt import iso_utc

# An empty or unmeasured table still takes a moment to dump: weigh it as one 8 KiB page.
MIN_TABLE_BYTES = 8192
# Share of the bar before and after the table data (catalog and schema, then indexes and constraints).
SCHEMA_PERCENT, DATA_PERCENT = 1.0, 98.0
# Never claim more of a table than this before pg_dump has moved on from it.
MAX_TABLE_FRACTION = 0.99


def data_fraction(progress: DumpProgress, tables: dict[str, TableEstimate],
                  copy: CopySample | None) -> tuple[float, str]:
    """How much of the table data is written (0–1), and how the current table's share was estimated.

    Tables count by their size on disk. Within the table being dumped: rows copied out of the
    estimated rows (pg_stat_progress_copy), else bytes copied out of its size; without COPY progress,
    the SQL written so far against the sizes (coarser: text is not the size on disk).
    """
    weights = {name: max(t.size_bytes, MIN_TABLE_BYTES) for name, t in tables.items()}
    started = list(progress.tables)
    current = progress.current_table if progress.phase == "data" else None
    finished = started[:-1] if current is not None and started else started
    done = sum(weights.get(name, MIN_TABLE_BYTES) for name in finished)
    current_weight = weights.get(current, MIN_TABLE_BYTES) if current is not None else 0
    # Tables the catalog did not list (an extension's configuration table) still count.
    total = max(sum(weights.values()), done + current_weight, 1)
    if current is None:
        return min(done / total, 1.0), "tables"
    estimate = tables.get(current)
    if copy is not None and estimate is not None and copy.relid == estimate.oid:
        if estimate.rows > 0:
            share, method = copy.tuples_processed / estimate.rows, "copy-rows"
        else:
            share, method = copy.bytes_processed / current_weight, "copy-bytes"
    else:
        share, method = (progress.sql_bytes - done) / current_weight, "output-bytes"
    share = min(max(share, 0.0), MAX_TABLE_FRACTION)
    return (done + share * current_weight) / total, method


def _iso(ts: float | None) -> str | None:
    return iso_utc(ts) if ts else None


def progress_report(record_id: str, filename: str, progress: DumpProgress, *, running: bool, status: int,
                    watch: DumpWatch, now: float | None = None, destination: str = "download") -> dict:
    """The JSON-ready state of one backup attempt (see docs/api.md).

    `destination` "storage": the dump goes into an upload, which is "done" only once the object is
    complete and read back; between the dump's end and then, the phase is "storing" ("stopping" while
    a failed or cancelled one's upload is being aborted).
    """
    now = time.time() if now is None else now
    stored = destination == "storage"
    # A stored backup has ended only once its upload is complete or aborted: until then it is running,
    # "storing" after a good dump, "stopping" after a failed or cancelled one (the abort is under way).
    state = "running" if stored and running and status == 200 else _state(progress, running, status)
    phase = progress.phase if state != "running" or progress.phase in ("connecting", "schema", "data") else "finishing"
    if state == "running" and stored and progress.outcome is not None:
        phase = "storing" if progress.outcome == "ok" else "stopping"
    tables = watch.tables
    percent, method = _percent(state, phase, progress, tables, watch.copy)
    elapsed = max((progress.finished if state != "running" and progress.finished else now) - progress.started, 0.0)
    eta = None
    if state == "running" and percent is not None and percent >= SCHEMA_PERCENT and elapsed >= 1:
        eta = round(elapsed * (100 - percent) / percent, 1)
    if tables is not None:
        table_count = max(len(tables), len(progress.tables))
    else:  # never polled while running: once it has ended, what pg_dump dumped is the count
        table_count = len(progress.tables) if state != "running" else None
    table = None
    if phase == "data" and progress.current_table is not None:
        table = {"name": progress.current_table, "number": len(progress.tables), "count": table_count}
    return {
        "id": record_id,
        "filename": filename,
        "destination": destination,
        "state": state,
        "phase": phase,
        "status": status,
        "error": progress.error if state != "done" else None,
        "percent": percent,
        "estimate": method,
        "eta_s": eta,
        "table": table,
        "tables_done": progress.tables_done,
        "table_count": table_count,
        "bytes_sent": progress.gzip_bytes,
        "sha256": progress.sha256 if state == "done" else None,
        "sql_bytes": progress.sql_bytes,
        "rate_bytes_per_s": round(progress.gzip_bytes / elapsed) if elapsed > 0 else None,
        "elapsed_s": round(elapsed, 1),
        "started_at": _iso(progress.started),
        "finished_at": _iso(progress.finished) if state != "running" else None,
    }


def _state(progress: DumpProgress, running: bool, status: int) -> str:
    if progress.outcome == "cancelled":  # before its first byte (a 409) or after (a broken transfer)
        return "cancelled"
    if status != 200:
        return "refused"
    if progress.outcome in ("failed", "aborted"):
        return progress.outcome  # at once, even before the broken response is closed
    # "done" only once the response is closed: the whole file, trailer included, has been sent.
    if running:
        return "running"
    return "done" if progress.outcome == "ok" else "aborted"


def _percent(state: str, phase: str, progress: DumpProgress, tables: dict[str, TableEstimate] | None,
             copy: CopySample | None) -> tuple[float | None, str | None]:
    if state == "done":
        return 100.0, None
    if state != "running":
        return None, None
    if phase == "connecting":
        return 0.0, None
    if phase == "schema":
        return SCHEMA_PERCENT, None
    if phase in ("finishing", "storing"):
        return SCHEMA_PERCENT + DATA_PERCENT, None
    if phase == "stopping":
        return None, None
    if tables is None:
        return None, None  # no estimates (yet): the page shows an indeterminate bar
    fraction, method = data_fraction(progress, tables, copy)
    return round(SCHEMA_PERCENT + DATA_PERCENT * fraction, 1), method
