"""One stored backup, start to finish: take the lock, stream the dump into an upload, complete it only
on success, compare its shape with the ones before (the shrink alarm), then apply retention. Used by `upload`, by the scheduler inside `serve` and by the API.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from backup_svc.dump.backup import backup_filename, write_backup
from backup_svc.dump.options import DumpOptions
from backup_svc.dump.pipeline import DumpProgress
from backup_svc.dump.rowcount import counts_metadata, total_rows
from backup_svc.storage.client import RetryPolicy, StorageError, make_client
from backup_svc.storage.location import BackupNames
from backup_svc.storage.lock import StoredBackupLock
from backup_svc.storage.prune import PruneReport, prune
from backup_svc.storage.settings import StorageSettings
from backup_svc.storage.shape import ShrinkFinding
from backup_svc.storage.shrink import check_shrink
from backup_svc.storage.upload import MultipartUpload, StoredObject

log = logging.getLogger(__name__)


class StoredBackupCancelled(Exception):
    """The stored backup was told to stop (the server is shutting down); its upload is aborted."""


@dataclass
class StoredBackupResult:
    """A stored backup that is complete and read back, and what retention did after it."""

    stored: StoredObject
    seconds: float
    sql_bytes: int
    rows: int | None = None  # all tables' rows, counted as the dump passed
    retention: PruneReport | None = None
    retention_error: str | None = None
    shrink: ShrinkFinding | None = None  # the backup fell below the earlier ones' median (BACKUP_SHRINK_ALERT)


@dataclass
class _CancellableSink:
    """Passes bytes to the upload; raises StoredBackupCancelled once `cancel` is set."""

    upload: MultipartUpload
    cancel: threading.Event = field(default_factory=threading.Event)

    def write(self, data: bytes) -> int:
        if self.cancel.is_set():
            raise StoredBackupCancelled("stopped: the service is shutting down")
        return self.upload.write(data)


def destination_of(options: DumpOptions, storage: StorageSettings) -> str:
    """What the single-flight lock is about: one backup name in one bucket prefix."""
    return f"{storage.location.url} {options.backup_name}"


def take_stored_backup(options: DumpOptions, storage: StorageSettings, *, name: str | None = None,
                       application_name: str = "backup_svc-upload",
                       progress: DumpProgress | None = None, cancel: threading.Event | None = None,
                       client=None, retry: RetryPolicy = RetryPolicy()) -> StoredBackupResult:
    """Take one backup into storage; raise on every path that stores nothing.

    AnotherBackupRunning when another process is storing a backup to the same place; CannotDump
    before pg_dump's first byte; DumpBroken, StorageError, StoredBackupCancelled, KeyboardInterrupt
    (or whatever the caller's signal handler raises) after it — in all of which the upload was
    aborted. Retention runs only after a read-back object, and its failure does not undo the backup
    (it is reported in `retention_error`).
    """
    client = client if client is not None else make_client(storage.client_env)
    started = time.monotonic()
    with StoredBackupLock(options.conn, destination_of(options, storage), timeout_s=options.connect_timeout_s):
        name = name or backup_filename(options.backup_name)
        key = storage.location.key(name)
        metadata = {"backup-name": options.backup_name}
        with MultipartUpload(client, storage.location.bucket, key, metadata=metadata, retry=retry) as upload:
            sink = _CancellableSink(upload, cancel or threading.Event())
            # count_rows: each table's rows go into the metadata, for restore drills to check against.
            written = write_backup(options, sink, application_name=application_name, progress=progress,
                                   count_rows=True)
            # write_backup returned: pg_dump exited 0 and its output ended with the completion line.
            if written.sha256 != upload.sha256 or written.gzip_bytes != upload.size:
                raise StorageError("the bytes uploaded differ from the bytes the dump produced")
            stored = upload.complete({
                "database": written.facts.database,
                "server-version": written.facts.version,
                "pg-dump-version": written.pg_dump.version,
                "sql-bytes": str(written.sql_bytes),
                "duration-s": f"{time.monotonic() - started:.1f}",
                **counts_metadata(written.table_rows or {}),
            })
        log.info("stored %s: %d bytes, sha256 %s", key, stored.size, stored.sha256)
        result = StoredBackupResult(stored=stored, seconds=time.monotonic() - started, sql_bytes=written.sql_bytes,
                                    rows=total_rows(written.table_rows))
        try:  # before retention: the hold it may place must count in this very prune
            result.shrink = check_shrink(client, storage.location, BackupNames(options.backup_name), stored,
                                         storage.shrink_alert, retry=retry)
        except StorageError as exc:
            # The backup is good. But a hold this check could not place may be what protects the last good
            # copy: retention waits for the next run rather than risk deleting it.
            log.error("the shrink check after %s failed, retention is skipped this time: %s", name, exc)
            if storage.retention is not None:
                result.retention_error = f"not applied, because the shrink check failed: {exc}"
            return result
        if storage.retention is not None:
            try:
                result.retention = prune(client, storage.location, BackupNames(options.backup_name),
                                         storage.retention, retry=retry)
                if result.retention.failed:
                    result.retention_error = "; ".join(f"{n}: {e}" for n, e in result.retention.failed)
            except StorageError as exc:
                result.retention_error = str(exc)
            if result.retention_error:
                log.error("retention after %s failed: %s", name, result.retention_error)
        _prune_history(client, storage, storage.history_days)
    return result


def _prune_history(client, storage: StorageSettings, days: int) -> None:
    """BACKUP_HISTORY_DAYS after each stored backup: only history events, and a failure only logged."""
    from backup_svc.history.bucket import HistoryBucket
    from backup_svc.history.retention import prune_history

    try:
        report = prune_history(HistoryBucket(client, storage.location.bucket, storage.location.prefix), days)
    except StorageError as exc:
        log.warning("history retention failed (the backup is stored; `prune` tries again): %s", exc)
        return
    if report.deleted or report.failed:
        log.info("; ".join(report.lines()))
