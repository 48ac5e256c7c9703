"""One stored backup on an rclone remote, start to finish — take.py's `take_stored_backup` for
`rclone:<remote>:<path>`: the same database lock, the leftovers of killed runs removed, pg_dump streamed
into `rclone rcat` (rclone_run.upload: moved into place only after pg_dump's success and the size and
sha256 check), then retention and the history's retention. Used by `upload` and by the scheduler in
`serve`; `cancel` stops it at once whatever it is doing (stopping.py), the temporary object removed.
With `recipients` (BACKUP_AGE_RECIPIENTS) the only sink the dump sees is the age encryptor, as with S3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from typing import Callable
from dataclasses import dataclass, field

from backup_svc.crypto.common import is_encrypted_name
from backup_svc.crypto.encrypt import AgeEncryptor
from backup_svc.dump.options import DumpOptions
from backup_svc.dump.attempt import DumpProgress
from backup_svc.dump.rowcount import total_rows

from . import rclone_run
from .client import StorageError
from .location import BackupNames
from .lock import StoredBackupLock
from .ownership import Owner
from .rclone_target import RcloneTarget
from .retention import RetentionPolicy
from .stopping import cancelled_as_such, StopFlag, stoppable_dump
from .upload import StoredObject

log = logging.getLogger(__name__)


@dataclass
class RemoteBackupResult:
    """A stored backup on the remote, complete and checked, and what the clean-up after it did (the fields
    the scheduler reads of take.py's StoredBackupResult)."""

    stored: StoredObject  # bucket "" and key `<remote>:<path>/<name>`: there is no bucket
    owner: Owner
    seconds: float
    sql_bytes: int | None
    rows: int | None = None
    retention_lines: list[tuple[str, str]] = field(default_factory=list)  # (name, "kept: …" / "deleted: …")
    retention_error: str | None = None
    leftovers: list[str] = field(default_factory=list)  # temporary objects of killed runs, removed now
    shrink = None  # the shrink alarm is not kept on remotes (docs/storage.md)


def lock_for(options: DumpOptions, target: RcloneTarget) -> StoredBackupLock:
    """The single-flight lock on one backup name in one remote folder (the database's advisory lock)."""
    return StoredBackupLock(
        options.conn, f"{target.location.url} {options.backup_name}", timeout_s=options.connect_timeout_s
    )


def take_remote_backup(
    options: DumpOptions,
    target: RcloneTarget,
    policy: RetentionPolicy | None,
    *,
    name: str,
    after: Callable[[RcloneTarget], None] | None = None,
    application_name: str = "backup_svc-upload",
    progress: DumpProgress | None = None,
    cancel: StopFlag | None = None,
    recipients: tuple = (),
) -> RemoteBackupResult:
    """Store one backup as `name` on `target`; raise on every path that stores nothing (AnotherBackupRunning,
    CannotDump, DumpBroken, StorageError, StoredBackupCancelled). A retention failure afterwards does not undo
    the backup (`retention_error`); `after(target)` runs then (BACKUP_HISTORY_DAYS on the remote's `_history/`,
    history/retention.py: it must log its failures, not raise them)."""
    cancel = cancel if cancel is not None else threading.Event()
    return cancelled_as_such(
        cancel, lambda: _take(options, target, policy, name, after, application_name, progress, cancel, recipients)
    )


def _take(
    options: DumpOptions,
    target: RcloneTarget,
    policy: RetentionPolicy | None,
    name: str,
    after: Callable[[RcloneTarget], None] | None,
    application_name: str,
    progress: DumpProgress | None,
    cancel: StopFlag,
    recipients: tuple,
) -> RemoteBackupResult:
    started = time.monotonic()
    if is_encrypted_name(name) != bool(recipients):  # the name must say what the bytes are
        raise ValueError(f"{name}: a stored backup is named ….sql.gz.age exactly when it is encrypted")
    with lock_for(options, target):
        leftovers = target.clean_leftovers()
        for left in leftovers:
            log.warning("removed %s, the temporary object of a run that did not finish", target.location.target(left))

        def dump(sink):
            if recipients:
                return _encrypted_dump(options, sink, recipients, application_name, progress, cancel)
            return stoppable_dump(
                options, sink, cancel, application_name=application_name, progress=progress, count_rows=True
            )

        stored, owner, written = rclone_run.upload(
            target, options.backup_name, name, dump, cancel.is_set, recipients=recipients
        )
        log.info("stored %s: %d bytes, sha256 %s", target.location.target(name), stored.size, stored.sha256)
        result = RemoteBackupResult(
            stored=StoredObject(
                bucket="", key=target.location.target(name), size=stored.size, sha256=stored.sha256, metadata={}
            ),
            owner=owner,
            seconds=time.monotonic() - started,
            sql_bytes=written.sql_bytes,
            rows=None if recipients else total_rows(written.table_rows),
            leftovers=leftovers,
        )
        if policy is not None:
            try:
                result.retention_lines = rclone_run.prune(
                    target, BackupNames(options.backup_name), owner, policy, keep=name
                )
            except StorageError as exc:  # the backup is stored; the next run tries again
                result.retention_error = str(exc)
                log.error("retention after %s failed: %s", name, exc)
        if after is not None:
            after(target)
    return result


class _Hashed:
    """A sink that passes bytes on and keeps their size and sha256 (the age file's, as the remote stores it)."""

    def __init__(self, sink):
        self.sink, self.size, self.hash = sink, 0, hashlib.sha256()

    def write(self, data) -> int:
        self.sink.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def _encrypted_dump(options: DumpOptions, sink, recipients, application_name: str, progress, cancel: StopFlag):
    """write_backup through the age encryptor into `sink`; the BackupWritten it returns describes the age file
    (its size and sha256: what the remote must hold), with no row counts (table names would be in the clear)."""
    hashed = _Hashed(sink)
    encryptor = AgeEncryptor(hashed, recipients)
    try:
        written = stoppable_dump(
            options, encryptor, cancel, application_name=application_name, progress=progress, count_rows=False
        )
        # write_backup returned: pg_dump exited 0 and its output ended with the completion line.
        encryptor.finish()
    finally:
        encryptor.abort()
    if encryptor.plain_sha256 != written.sha256 or encryptor.plain_bytes != written.gzip_bytes:
        raise StorageError("the bytes encrypted differ from the bytes the dump produced")
    return dataclasses.replace(written, sha256=hashed.hash.hexdigest(), gzip_bytes=hashed.size, table_rows=None)
