"""One stored backup, start to finish: take the lock, stream the dump into an upload, complete it only
on success, compare its shape with the ones before (the shrink alarm), then clean up (incomplete
uploads left by killed runs; retention). Used by `upload`, by the scheduler inside `serve` and by the API.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from backup_svc.crypto.common import is_encrypted_name
from backup_svc.crypto.encrypt import AgeEncryptor
from backup_svc.crypto.keys import Recipient
from backup_svc.crypto.labels import recipients_metadata
from backup_svc.dump.backup import backup_filename
from backup_svc.dump.options import DumpOptions
from backup_svc.dump.attempt import DumpProgress
from backup_svc.dump.rowcount import counts_metadata, total_rows
from backup_svc.storage.client import ClientBeingMade, RetryPolicy, StorageError, make_client, make_part_client
from backup_svc.storage.listing import MetadataCache
from backup_svc.storage.location import BackupNames
from backup_svc.storage.lock import StoredBackupLock
from backup_svc.storage.ownership import Owner, OwnerLookup
from backup_svc.storage.prune import PruneReport, abort_stale_uploads, prune
from backup_svc.storage.settings import StorageSettings
from backup_svc.storage.shape import ShrinkFinding
from backup_svc.storage.shrink import check_shrink
from backup_svc.storage.stopping import cancelled_as_such, DumpStopper, StopFlag, StoredBackupCancelled, stoppable_dump
from backup_svc.storage.storeformat import DEDUP
from backup_svc.storage.upload import MultipartUpload, StoredObject
from backup_svc.storage.dedup.chunks import ChunkKey
from backup_svc.storage.dedup.manifest import manifest_name
from backup_svc.storage.dedup.upload import store_dedup_backup

__all__ = [
    "StoredBackupCancelled",
    "StoredBackupResult",
    "take_stored_backup",
    "owner_lookup",
    "destination_of",
    "stored_backup_name",
]

log = logging.getLogger(__name__)


@dataclass
class StoredBackupResult:
    """A stored backup that is complete and read back, and what the clean-up after it did."""

    stored: StoredObject
    seconds: float
    sql_bytes: int | None  # None for an encrypted backup: nothing read from its contents in the clear
    rows: int | None = None  # all tables' rows, counted as the dump passed
    retention: PruneReport | None = None
    retention_error: str | None = None
    shrink: ShrinkFinding | None = None  # the backup fell below the earlier ones' median (BACKUP_SHRINK_ALERT)
    # incomplete uploads of earlier, killed runs that this run aborted: (key, started)
    leftovers: list[tuple[str, datetime]] = field(default_factory=list)


def stored_backup_name(backup_name: str, storage: StorageSettings | None, *, encrypted: bool) -> str:
    """The name a stored backup taken now gets: `….sql.gz`, `….sql.gz.age` or a dedup manifest's `….sql.dedup`."""
    if storage is not None and storage.storage_format == DEDUP:
        return manifest_name(backup_filename(backup_name))
    return backup_filename(backup_name, encrypted=encrypted)


def destination_of(options: DumpOptions, storage: StorageSettings) -> str:
    """What the single-flight lock is about: one backup name in one bucket prefix."""
    return f"{storage.location.url} {options.backup_name}"


def owner_lookup(options: DumpOptions, identify: Callable[[], str] | None = None) -> OwnerLookup:
    """This service's Owner (ownership.py), asking the database for its cluster's identity (`identify`,
    by default a query of its own)."""
    from backup_svc.pg.facts import server_facts

    identify = identify or (lambda: server_facts(options.conn, timeout_s=options.connect_timeout_s).system_identifier)
    return OwnerLookup(options.backup_name, options.conn.dbname, identify)


def take_stored_backup(
    options: DumpOptions,
    storage: StorageSettings,
    *,
    name: str | None = None,
    application_name: str = "backup_svc-upload",
    progress: DumpProgress | None = None,
    cancel: StopFlag | None = None,
    client=None,
    retry: RetryPolicy = RetryPolicy(),
    recipients: tuple[Recipient, ...] = (),
    after: Callable[[object], None] | None = None,
) -> StoredBackupResult:
    """Take one backup into storage; raise on every path that stores nothing.

    `after(client)` runs once the backup is stored and cleaned up, still under the lock (the history's
    retention, history/retention.py: it must log its failures, not raise them).

    `recipients` (BACKUP_AGE_RECIPIENTS): the object is age-encrypted to them, named `….sql.gz.age`.

    AnotherBackupRunning when another process is storing a backup to the same place; CannotDump
    before pg_dump's first byte; DumpBroken, StorageError, StoredBackupCancelled, KeyboardInterrupt
    (or whatever the caller's signal handler raises) after it — in all of which the upload was
    aborted. `cancel` stops the run at once, whatever it is doing (stopping.py). The clean-up runs
    only after a read-back object, and its failure does not undo the backup (`retention_error`).
    """
    cancel = cancel if cancel is not None else threading.Event()
    return cancelled_as_such(
        cancel,
        lambda: _take(options, storage, name, application_name, progress, cancel, client, retry, recipients, after),
    )


def _take(
    options: DumpOptions,
    storage: StorageSettings,
    name: str | None,
    application_name: str,
    progress: DumpProgress | None,
    cancel: StopFlag,
    client,
    retry: RetryPolicy,
    recipients: tuple[Recipient, ...],
    after: Callable[[object], None] | None,
) -> StoredBackupResult:
    # the parts' own client gives sending its deadline (SEND_STALL_S); a caller's client does everything
    if client is None:  # made once pg_dump has started (the upload is created when its first part is sent)
        part_client = ClientBeingMade(lambda: make_part_client(storage.client_env))
        client = ClientBeingMade(lambda: make_client(storage.client_env))
    else:
        part_client = client
    started = time.monotonic()
    with StoredBackupLock(options.conn, destination_of(options, storage), timeout_s=options.connect_timeout_s):
        name = name or stored_backup_name(options.backup_name, storage, encrypted=bool(recipients))
        key = storage.location.key(name)
        if storage.storage_format == DEDUP:
            dedup = store_dedup_backup(
                options,
                client,
                storage.location,
                name,
                ChunkKey(storage.dedup_key),
                application_name=application_name,
                progress=progress,
                cancel=cancel,
                retry=retry,
                completion_metadata=lambda w, seconds: _completion_metadata(w, seconds, encrypted=bool(recipients)),
                started=started,
                recipients=recipients,
            )
            stored, written, owner = dedup.stored, dedup.written, dedup.owner
            if progress is not None:
                progress.sha256 = stored.sha256  # the manifest's, as the listing shows it (not this run's .sql.gz)
        else:
            stored, written, owner = _store_sqlgz(
                options,
                storage,
                name,
                key,
                application_name,
                progress,
                cancel,
                client,
                part_client,
                retry,
                recipients,
                started,
            )
        log.info("stored %s: %d bytes, sha256 %s", key, stored.size, stored.sha256)
        result = StoredBackupResult(
            stored=stored,
            seconds=time.monotonic() - started,
            sql_bytes=None if recipients else written.sql_bytes,
            rows=None if recipients else total_rows(written.table_rows),
        )
        retain = True
        # every backup's metadata, read once (one HEAD each) for the shrink check and retention both
        metadata: MetadataCache = {}
        try:  # before retention: the hold it may place must count in this very prune
            result.shrink = check_shrink(
                client,
                storage.location,
                BackupNames(options.backup_name),
                stored,
                storage.shrink_alert,
                owner=owner,
                retry=retry,
                cache=metadata,
            )
        except StorageError as exc:
            # The backup is good. But a hold this check could not place may be what protects the last good
            # copy: retention waits for the next run rather than risk deleting it.
            log.error("the shrink check after %s failed, retention is skipped this time: %s", name, exc)
            if storage.retention is not None:
                result.retention_error = f"not applied, because the shrink check failed: {exc}"
            retain = False
        _clean_up(result, client, options, storage, owner, retry, retain=retain, cache=metadata)
        if after is not None:
            after(client)
    return result


def _store_sqlgz(
    options: DumpOptions,
    storage: StorageSettings,
    name: str,
    key: str,
    application_name: str,
    progress: DumpProgress | None,
    cancel: StopFlag,
    client,
    part_client,
    retry: RetryPolicy,
    recipients: tuple[Recipient, ...],
    started: float,
):
    """The `.sql.gz` (or `.sql.gz.age`) object: the dump streamed into one multipart upload, completed only on
    success. (StoredObject, BackupWritten, Owner)."""
    if is_encrypted_name(name) != bool(recipients):  # the name must say what the bytes are
        raise ValueError(f"{name}: a stored backup is named ….sql.gz.age exactly when it is encrypted")
    metadata = {"backup-name": options.backup_name}
    if recipients:
        metadata.update(recipients_metadata(recipients))
    with MultipartUpload(
        client,
        storage.location.bucket,
        key,
        metadata=metadata,
        retry=retry,
        cancelled=cancel.is_set,
        part_client=part_client,
        deferred=True,
    ) as upload:
        # With recipients, the only sink the dump ever sees is the encryptor: no path writes cleartext.
        encryptor = AgeEncryptor(upload, recipients) if recipients else None
        try:
            # count_rows: each table's rows go into the metadata, for restore drills to check against
            # (not for an encrypted backup: table names and counts would be in the clear).
            written = stoppable_dump(
                options,
                encryptor or upload,
                cancel,
                application_name=application_name,
                progress=progress,
                count_rows=not recipients,
                created=lambda dump, stopper: _dump_created(dump, stopper, client, part_client),
                # the upload hashes what it stores (the sha256 recorded); the dump's own hash would only
                # cross-check it, which the CRC32 both keep does for ~1/10 of the CPU
                sha256=bool(recipients),
            )
            # write_backup returned: pg_dump exited 0 and its output ended with the completion line.
            if encryptor is not None:
                encryptor.finish()
        finally:
            if encryptor is not None:
                encryptor.abort()
        # what reached the storage's parts (or the encryptor) is what the dump produced, byte for byte
        uploaded = (
            (written.sha256 == encryptor.plain_sha256 and written.gzip_bytes == encryptor.plain_bytes)
            if encryptor
            else (written.crc32 == upload.crc32 and written.gzip_bytes == upload.size)
        )
        if not uploaded:
            raise StorageError("the bytes uploaded differ from the bytes the dump produced")
        owner = Owner(options.backup_name, written.facts.database, written.facts.system_identifier or None)
        stored = upload.complete(
            {
                **_completion_metadata(written, time.monotonic() - started, encrypted=bool(recipients)),
                **owner.metadata(),  # who wrote it, for which database: retention and listings trust only this
            }
        )
        if progress is not None:
            progress.sha256 = stored.sha256  # the stored bytes' (age's when encrypted), as the listing shows it
    return stored, written, owner


def _dump_created(dump, stopper: DumpStopper, *clients) -> None:
    """pg_dump is about to start: let the stopper reach it, and make the storage clients meanwhile."""
    stopper.created(dump)
    for client in clients:
        if isinstance(client, ClientBeingMade):
            client.begin()


def _completion_metadata(written, seconds: float, *, encrypted: bool) -> dict[str, str]:
    """What the object's metadata records once it is complete. An encrypted object gets nothing read from
    the database's contents (no SQL size, no table names or row counts, not even totals): drills count its
    rows from the decrypted SQL, and the shrink alarm compares its size."""
    metadata = {
        "server-version": written.facts.version,
        "pg-dump-version": written.pg_dump.version,
        "duration-s": f"{seconds:.1f}",
    }
    if not encrypted:
        metadata["sql-bytes"] = str(written.sql_bytes)
        metadata.update(counts_metadata(written.table_rows or {}))
    return metadata


def _clean_up(
    result: StoredBackupResult,
    client,
    options: DumpOptions,
    storage: StorageSettings,
    owner: Owner,
    retry: RetryPolicy,
    *,
    retain: bool = True,
    cache: MetadataCache | None = None,
) -> None:
    """After a stored backup, under its lock: abort incomplete uploads that killed runs left (always) and
    apply retention (when set and `retain`), never touching the object just stored. `cache`: the backups'
    metadata the shrink check read (survey_backups)."""
    names = BackupNames(options.backup_name)
    if storage.retention is None or not retain:
        try:
            result.leftovers = abort_stale_uploads(client, storage.location, names, retry=retry)
        except StorageError as exc:  # the backup is stored; the next run tries again
            log.warning("cleaning up incomplete uploads after %s failed: %s", result.stored.key, exc)
        for key, initiated in result.leftovers:
            log.warning(
                "aborted the incomplete upload of %s left by a run started %s UTC", key, f"{initiated:%Y-%m-%d %H:%M}"
            )
    else:
        try:  # prune aborts the leftovers too
            result.retention = prune(
                client,
                storage.location,
                names,
                owner,
                storage.retention,
                keep_key=result.stored.key,
                retry=retry,
                cache=cache,
            )
            result.leftovers = result.retention.stale_uploads
            if result.retention.failed:
                result.retention_error = "; ".join(f"{n}: {e}" for n, e in result.retention.failed)
        except StorageError as exc:
            result.retention_error = str(exc)
    if result.retention_error:
        log.error("clean-up after %s failed: %s", result.stored.key, result.retention_error)
