"""The progress report of one backup attempt, as `GET /api/v1/backups/<id>` returns it (docs/api.md).

Pure computation over what the dump recorded (attempt.DumpProgress) and what the database said
(progress.DumpWatch); no I/O.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from backup_svc.dump.attempt import ABORTED, CANCELLED, FAILED, OK, DumpProgress
from backup_svc.dump.watch import CopySample, DumpWatch, TableEstimate
from backup_svc.timefmt import iso_utc

# An empty or unmeasured table still takes a moment to dump: weigh it as one 8 KiB page.
MIN_TABLE_BYTES = 8192
# Share of the bar before and after the table data (catalog and schema, then indexes and constraints).
SCHEMA_PERCENT, DATA_PERCENT = 1.0, 98.0
# Never claim more of a table than this before pg_dump has moved on from it.
MAX_TABLE_FRACTION = 0.99
# Before this share of the dump, its size so far says too little about the whole file's size.
MIN_SHARE_FOR_SIZE = 0.02
# 100 % is for a download that is complete: the client has acknowledged every byte.
MAX_RUNNING_PERCENT = 99.9


def data_fraction(
    progress: DumpProgress,
    tables: dict[str, TableEstimate],
    copy: CopySample | None,
    copy_supported: bool = True,
    samples: dict[int, CopySample] | None = None,
) -> tuple[float, str]:
    """How much of the table data pg_dump's output has reached (0–1), and how the current table's share was estimated.

    Tables count by their size on disk. Within the table being read from pg_dump's output, the
    SQL read of it so far is measured against the SQL the table will make, which COPY progress
    (pg_stat_progress_copy, PostgreSQL 14+) tells: bytes sent for the rows copied out of the
    table's row count ("copy-rows"). The server runs ahead of the output, so the latest sample of
    *this* table counts, even when its COPY has ended. Without a row count, the server's bytes
    against the size on disk ("copy-bytes"); on servers without COPY progress, the table's SQL
    so far against its size on disk ("output-bytes"; text is not the size on disk, so coarser).
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
    sample = None
    if estimate is not None:
        sample = (samples or {}).get(estimate.oid) or (
            copy if copy is not None and copy.relid == estimate.oid else None
        )
    read = max(progress.sql_bytes - progress.table_sql_start, 0)
    if sample is not None and estimate.rows > 0 and sample.tuples_processed > 0 and sample.bytes_processed > 0:
        table_sql = sample.bytes_processed * estimate.rows / sample.tuples_processed
        share, method = read / table_sql, "copy-rows"
    elif sample is not None and sample.bytes_processed > 0:
        share, method = min(read, sample.bytes_processed) / current_weight, "copy-bytes"
    elif copy_supported and done > 0 and progress.table_sql_start > 0:
        # No sample of this table (the server got through it between two samples): assume it makes
        # as much SQL per byte on disk as the tables before it did.
        share, method = read * done / progress.table_sql_start / current_weight, "tables"
    elif copy_supported and (ratio := _sql_per_disk_byte(tables, samples or {}, copy)) is not None:
        # The first table, with no sample of its own (its COPY ended before anyone asked: the pipe and
        # socket buffers hold many MB): as much SQL per byte on disk as a later table the server sampled.
        share, method = read / (ratio * current_weight), "tables"
    else:
        # Nothing to compare with yet (or PostgreSQL < 14): its SQL so far against its size on disk.
        share, method = read / current_weight, "output-bytes"
    share = min(max(share, 0.0), MAX_TABLE_FRACTION)
    return (done + share * current_weight) / total, method


def _sql_per_disk_byte(
    tables: dict[str, TableEstimate], samples: dict[int, CopySample], copy: CopySample | None
) -> float | None:
    """SQL per byte on disk of the sampled tables whose SQL size their COPY progress tells; None when none does."""
    by_oid = {t.oid: t for t in tables.values()}
    seen = {**samples, **({copy.relid: copy} if copy is not None else {})}
    sql = disk = 0.0
    for relid, sample in seen.items():
        table = by_oid.get(relid)
        if table is not None and table.rows > 0 and sample.tuples_processed > 0 and sample.bytes_processed > 0:
            sql += sample.bytes_processed * table.rows / sample.tuples_processed
            disk += max(table.size_bytes, MIN_TABLE_BYTES)
    return sql / disk if disk else None


def _iso(ts: float | None) -> str | None:
    return iso_utc(ts) if ts else None


@dataclass(frozen=True)
class Delivery:
    """What reached the client so far (serving.sendmeter measures it): the progress is about these bytes."""

    bytes: int  # acknowledged by the client's TCP (or written, where that cannot be asked)
    rate: float | None = None  # bytes per second over the last few seconds
    send_s: float | None = None  # first byte written to last byte acknowledged, once all were


class ForwardPercent:
    """The percent shown for one dump: it only ever moves forward, whatever the estimate does."""

    def __init__(self) -> None:
        self._shown = 0.0
        self._lock = threading.Lock()

    def advance(self, percent: float | None) -> float | None:
        """`percent`, or the highest shown so far when that is more; None stays None until a value came."""
        with self._lock:
            if percent is None:
                return self._shown or None
            self._shown = max(self._shown, percent)
            return self._shown


def progress_report(
    record_id: str,
    filename: str,
    progress: DumpProgress,
    *,
    running: bool,
    status: int,
    watch: DumpWatch,
    now: float | None = None,
    destination: str = "download",
    delivery: Delivery | None = None,
) -> dict:
    """The JSON-ready state of one backup attempt (see docs/api.md).

    `destination` "storage": the dump goes into an upload, which is "done" only once the object is
    complete and read back; between the dump's end and then, the phase is "storing" ("stopping" while
    a failed or cancelled one's upload is being aborted).

    The percent is of the bytes the client has (`delivery`), not of what pg_dump has written: the
    dump runs ahead of the download by whatever the pipe and the network buffers hold. pg_dump's
    position gives the share of the dump made so far, its compressed bytes so far give the
    expected size of the whole file, and the delivered bytes are measured against that.
    """
    now = time.time() if now is None else now
    stored = destination == "storage"
    # A stored backup has ended only once its upload is complete or aborted: until then it is running,
    # "storing" after a good dump, "stopping" after a failed or cancelled one (the abort is under way).
    state = "running" if stored and running and status == 200 else _state(progress, running, status)
    phase = progress.phase if state != "running" or progress.phase in ("connecting", "schema", "data") else "finishing"
    if state == "running" and stored and progress.outcome is not None:
        phase = "storing" if progress.outcome == OK else "stopping"
    elif state == "running" and progress.outcome == OK:
        phase = "sending"  # pg_dump is done; the last bytes are on their way to the client
    tables = watch.tables
    made = progress.gzip_bytes
    sent = made if delivery is None else min(delivery.bytes, made)
    share, method = _dump_share(state, phase, progress, tables, watch)
    expected = None  # the whole file's size, as far as it can be told yet
    if state == "done":
        expected = made
    elif state == "running" and share is not None and share >= MIN_SHARE_FOR_SIZE and made:
        expected = max(round(made / share), made)
    percent = None
    if state == "done":
        percent = 100.0
    elif state == "running" and share is not None:
        percent = 0.0 if not made else min(round(100 * share * sent / made, 1), MAX_RUNNING_PERCENT)
    elapsed = max((progress.finished if state != "running" and progress.finished else now) - progress.started, 0.0)
    rate = delivery.rate if delivery is not None else None
    if state != "running":
        send_s = delivery.send_s if delivery is not None else None
        rate = sent / send_s if send_s else (sent / elapsed if elapsed > 0 else None)
    eta = None
    if state == "running" and expected is not None and rate:
        eta = round(max(expected - sent, 0) / rate, 1)
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
        "bytes_sent": sent,
        "bytes_expected": expected,
        "bytes_made": made,
        "sha256": progress.sha256 if state == "done" else None,
        "sql_bytes": progress.sql_bytes,
        "rate_bytes_per_s": round(rate) if rate else None,
        "send_s": round(delivery.send_s, 1) if delivery is not None and delivery.send_s is not None else None,
        "elapsed_s": round(elapsed, 1),
        "started_at": _iso(progress.started),
        "finished_at": _iso(progress.finished) if state != "running" else None,
    }


def _state(progress: DumpProgress, running: bool, status: int) -> str:
    if progress.outcome == CANCELLED:  # before its first byte (a 409) or after (a broken transfer)
        return "cancelled"
    if status != 200:
        return "refused"
    if progress.outcome in (FAILED, ABORTED):
        return progress.outcome  # at once, even before the broken response is closed
    # "done" only once the response is closed: the whole file, trailer included, has been sent.
    if running:
        return "running"
    return "done" if progress.outcome == OK else "aborted"


def _dump_share(
    state: str, phase: str, progress: DumpProgress, tables: dict[str, TableEstimate] | None, watch: DumpWatch
) -> tuple[float | None, str | None]:
    """How much of the whole dump pg_dump has written (0–1), and how the current table's part was estimated."""
    if state != "running":
        return None, None
    if phase == "connecting":
        return 0.0, None
    if phase == "schema":
        return SCHEMA_PERCENT / 100, None
    if phase in ("finishing", "storing", "sending"):
        return (SCHEMA_PERCENT + DATA_PERCENT) / 100, None
    if phase == "stopping":
        return None, None
    if tables is None:
        return None, None  # no estimates (yet): the page shows an indeterminate bar
    fraction, method = data_fraction(progress, tables, watch.copy, watch.copy_supported, watch.samples)
    return (SCHEMA_PERCENT + DATA_PERCENT * fraction) / 100, method
