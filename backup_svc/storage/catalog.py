"""The stored backups as people see them: name, size, time, sha256 and the versions that made them.

The listing is one request per 1,000 objects; the sha256 and versions are each object's metadata,
one HEAD per object. An object under a backup name is never overwritten (the upload refuses an
existing key), so its metadata is read once and remembered: a listing after the first costs one
request plus one HEAD per new backup.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from backup_svc.crypto.labels import describe, recipient_labels
from backup_svc.timefmt import iso_utc

from .client import RetryPolicy, error_code, with_retries
from .listing import StoredBackup, list_backups
from .location import BackupNames, StorageLocation

# HEADs in parallel: a first listing of a few dozen backups takes a few round trips, not dozens.
HEAD_WORKERS = 4


@dataclass(frozen=True)
class CatalogEntry:
    """One stored backup with what its metadata says (None where the object has no such metadata)."""

    backup: StoredBackup
    sha256: str | None
    server_version: str | None
    pg_dump_version: str | None
    sql_bytes: int | None
    duration_s: float | None
    # age encryption (crypto/labels.py): whether the object is encrypted, and the keys it was encrypted to
    encrypted: bool = False
    recipients: tuple[str, ...] = ()

    def as_json(self) -> dict:
        """The entry as `GET /api/v1/stored` lists it (docs/api.md)."""
        b = self.backup
        return {"name": b.name, "size": b.size, "time": iso_utc(b.time.timestamp()), "sha256": self.sha256,
                "server_version": self.server_version, "pg_dump_version": self.pg_dump_version,
                "sql_bytes": self.sql_bytes, "duration_s": self.duration_s, "encrypted": self.encrypted,
                "recipients": list(self.recipients)}


def _number(text: str | None, kind):
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return None


def entry_from_metadata(backup: StoredBackup, metadata: dict[str, str]) -> CatalogEntry:
    """A catalog entry from an object's user metadata (as `take_stored_backup` writes it)."""
    return CatalogEntry(backup=backup, sha256=metadata.get("sha256"), server_version=metadata.get("server-version"),
                        pg_dump_version=metadata.get("pg-dump-version"),
                        sql_bytes=_number(metadata.get("sql-bytes"), int),
                        duration_s=_number(metadata.get("duration-s"), float),
                        encrypted=describe(backup.name, metadata) != "plain",
                        recipients=tuple(recipient_labels(metadata)))


class StoredCatalog:
    """Lists this service's stored backups with their metadata, remembering metadata already read."""

    def __init__(self, client, location: StorageLocation, names: BackupNames, *, retry: RetryPolicy = RetryPolicy()):
        self.client = client
        self.location = location
        self.names = names
        self.retry = retry
        self._lock = threading.Lock()
        self._metadata: dict[tuple[str, int], dict[str, str]] = {}  # (key, size) -> user metadata

    def entries(self) -> list[CatalogEntry]:
        """Every stored backup of this service, newest first; StorageError when storage cannot be read."""
        backups = list_backups(self.client, self.location, self.names, retry=self.retry)
        with self._lock:
            missing = [b for b in backups if (b.key, b.size) not in self._metadata]
        if missing:
            with ThreadPoolExecutor(max_workers=HEAD_WORKERS, thread_name_prefix="storage-head") as pool:
                for backup, metadata in zip(missing, pool.map(self._head, missing)):
                    with self._lock:
                        self._metadata[(backup.key, backup.size)] = metadata
        with self._lock:
            listed = {(b.key, b.size) for b in backups}
            for gone in set(self._metadata) - listed:  # deleted by retention: forget it
                del self._metadata[gone]
            return [entry_from_metadata(b, self._metadata[(b.key, b.size)]) for b in backups]

    def _head(self, backup: StoredBackup) -> dict[str, str]:
        head = with_retries(f"reading the metadata of {backup.key}",
                            lambda: self.client.head_object(Bucket=self.location.bucket, Key=backup.key), self.retry)
        return dict(head.get("Metadata", {}))

    def exists(self, name: str) -> bool:
        """Whether the backup `name` is in storage now (one HEAD); StorageError when storage cannot say."""
        key = self.location.key(name)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.location.bucket, Key=key)
                return True
            except Exception as exc:
                if error_code(exc)[1] == 404:
                    return False
                raise

        return with_retries(f"looking up {key}", head, self.retry)
