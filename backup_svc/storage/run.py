"""One stored backup, start to finish: take the lock, stream the dump into an upload, complete it only
on success, then apply retention. Used by `upload`, by the scheduler inside `serve` and by the API.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from backup_svc.config import Settings, StorageSettings
from backup_svc.crypto.common import is_encrypted_name
from backup_svc.crypto.encrypt import AgeEncryptor
from backup_svc.crypto.labels import recipients_metadata
from backup_svc.dump.backup import backup_filename, write_backup
from backup_svc.dump.pipeline import DumpProgress
from backup_svc.notify.rowcount import counts_metadata
from backup_svc.storage.client import RetryPolicy, StorageError, make_client
from backup_svc.storage.location import BackupNames
from backup_svc.storage.lock import StoredBackupLock
from backup_svc.storage.prune import PruneReport, prune
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
    retention: PruneReport | None = None
    retention_error: str | None = None


@dataclass
class _CancellableSink:
    """Passes bytes to the upload (or the encryptor in front of it); raises StoredBackupCancelled once
    `cancel` is set."""

    upload: MultipartUpload | AgeEncryptor
    cancel: threading.Event = field(default_factory=threading.Event)

    def write(self, data: bytes) -> int:
        if self.cancel.is_set():
            raise StoredBackupCancelled("stopped: the service is shutting down")
        return self.upload.write(data)


def destination_of(settings: Settings, storage: StorageSettings) -> str:
    """What the single-flight lock is about: one backup name in one bucket prefix."""
    return f"{storage.location.url} {settings.backup_name}"


def take_stored_backup(settings: Settings, storage: StorageSettings, *, name: str | None = None,
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
    with StoredBackupLock(settings.conn, destination_of(settings, storage), timeout_s=settings.connect_timeout_s):
        recipients = settings.encryption.recipients
        name = name or backup_filename(settings.backup_name, encrypted=bool(recipients))
        if is_encrypted_name(name) != bool(recipients):  # the name must say what the bytes are
            raise ValueError(f"{name}: a stored backup is named ….sql.gz.age exactly when it is encrypted")
        key = storage.location.key(name)
        metadata = {"backup-name": settings.backup_name}
        if recipients:
            metadata.update(recipients_metadata(recipients))
        with MultipartUpload(client, storage.location.bucket, key, metadata=metadata, retry=retry) as upload:
            # With recipients, the only sink the dump ever sees is the encryptor: no path writes cleartext.
            encryptor = AgeEncryptor(upload, recipients) if recipients else None
            try:
                sink = _CancellableSink(encryptor or upload, cancel or threading.Event())
                # count_rows: each table's rows go into the metadata, for restore drills to check against.
                written = write_backup(settings, sink, application_name=application_name, progress=progress,
                                       count_rows=not recipients)
                # write_backup returned: pg_dump exited 0 and its output ended with the completion line.
                if encryptor is not None:
                    encryptor.finish()
            finally:
                if encryptor is not None:
                    encryptor.abort()
            plain_sha256, plain_size = ((encryptor.plain_sha256, encryptor.plain_bytes) if encryptor
                                        else (upload.sha256, upload.size))
            if written.sha256 != plain_sha256 or written.gzip_bytes != plain_size:
                raise StorageError("the bytes uploaded differ from the bytes the dump produced")
            stored = upload.complete(_completion_metadata(written, time.monotonic() - started,
                                                          encrypted=bool(recipients)))
            if recipients and progress is not None:
                progress.sha256 = stored.sha256  # the stored (age) bytes', as the listing shows it
        log.info("stored %s: %d bytes, sha256 %s", key, stored.size, stored.sha256)
        result = StoredBackupResult(stored=stored, seconds=time.monotonic() - started, sql_bytes=written.sql_bytes)
        if storage.retention is not None:
            try:
                result.retention = prune(client, storage.location, BackupNames(settings.backup_name),
                                         storage.retention, retry=retry)
                if result.retention.failed:
                    result.retention_error = "; ".join(f"{n}: {e}" for n, e in result.retention.failed)
            except StorageError as exc:
                result.retention_error = str(exc)
            if result.retention_error:
                log.error("retention after %s failed: %s", name, result.retention_error)
    return result


def _completion_metadata(written, seconds: float, *, encrypted: bool) -> dict[str, str]:
    """What the object's metadata records once it is complete. An encrypted object gets nothing read from
    the database's contents (no SQL size, no table names or row counts): drills count its rows from the
    decrypted SQL instead."""
    metadata = {
        "database": written.facts.database,
        "server-version": written.facts.version,
        "pg-dump-version": written.pg_dump.version,
        "duration-s": f"{seconds:.1f}",
    }
    if not encrypted:
        metadata["sql-bytes"] = str(written.sql_bytes)
        metadata.update(counts_metadata(written.table_rows or {}))
    return metadata
