"""The stored backups as people see them: name, size, time, sha256 and the versions that made them.

The listing is one request per 1,000 objects; the sha256, versions and ownership record are each
object's metadata, one HEAD per object. An object under a backup name is never overwritten (the
upload refuses an existing key), so its metadata is read once and remembered: a listing after the
first costs one request plus one HEAD per new backup.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from backup_svc.crypto.labels import describe, recipient_labels
from backup_svc.timefmt import iso_utc

from .client import RetryPolicy, object_exists
from .listing import MetadataCache, StoredBackup, Survey, survey_backups
from .location import BackupNames, StorageLocation
from .ownership import Owner
from .shape import shape_of


@dataclass(frozen=True)
class CatalogEntry:
    """One stored backup with what its metadata says (None where the object has no such metadata)."""

    backup: StoredBackup
    sha256: str | None
    server_version: str | None
    pg_dump_version: str | None
    sql_bytes: int | None
    duration_s: float | None
    rows: int | None = None  # total rows counted at dump time (None: not recorded, e.g. encrypted)
    tables: int | None = None
    # age encryption (crypto/labels.py): whether the object is encrypted, and the keys it was encrypted to
    encrypted: bool = False
    recipients: tuple[str, ...] = ()

    def as_json(self) -> dict:
        """The entry as `GET /api/v1/stored` lists it (docs/api.md)."""
        b = self.backup
        return {
            "name": b.name,
            "size": b.size,
            "time": iso_utc(b.time.timestamp()),
            "sha256": self.sha256,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "sql_bytes": self.sql_bytes,
            "duration_s": self.duration_s,
            "rows": self.rows,
            "tables": self.tables,
            "encrypted": self.encrypted,
            "recipients": list(self.recipients),
        }


def _number(text: str | None, kind):
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return None


def entry_from_metadata(backup: StoredBackup, metadata: dict[str, str]) -> CatalogEntry:
    """A catalog entry from an object's user metadata (as `take_stored_backup` writes it)."""
    shape = shape_of(backup.name, backup.time, backup.size, metadata)
    return CatalogEntry(
        backup=backup,
        sha256=metadata.get("sha256"),
        server_version=metadata.get("server-version"),
        pg_dump_version=metadata.get("pg-dump-version"),
        sql_bytes=shape.sql_bytes,
        duration_s=_number(metadata.get("duration-s"), float),
        rows=shape.rows,
        tables=shape.tables,
        encrypted=describe(backup.name, metadata) != "plain",
        recipients=tuple(recipient_labels(metadata)),
    )


class StoredCatalog:
    """Lists this service's stored backups with their metadata, remembering metadata already read."""

    def __init__(
        self,
        client,
        location: StorageLocation,
        names: BackupNames,
        owner: Callable[[], Owner],
        *,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.client = client
        self.location = location
        self.names = names
        self.owner = owner  # asked on every listing: it learns the cluster's identity once the database answers
        self.retry = retry
        self._lock = threading.Lock()
        self._metadata: MetadataCache = {}
        # backups an older version stored without an ownership record, as the last listing found them
        self.unrecorded: list[CatalogEntry] = []

    def survey(self) -> Survey:
        """This service's backups (newest first) and the objects named like one that are not; StorageError
        when storage cannot be read."""
        with self._lock:
            cache = dict(self._metadata)
        survey = survey_backups(self.client, self.location, self.names, self.owner(), retry=self.retry, cache=cache)
        with self._lock:
            self._metadata = cache
        return survey

    def entries(self) -> list[CatalogEntry]:
        """Every stored backup of this service, newest first; StorageError when storage cannot be read."""
        survey = self.survey()
        self.unrecorded = [entry_from_metadata(b, b.metadata) for b in survey.unrecorded]
        return [entry_from_metadata(b, b.metadata) for b in survey.backups]

    def exists(self, name: str) -> bool:
        """Whether the backup `name` is in storage now (one HEAD); StorageError when storage cannot say."""
        key = self.location.key(name)
        return object_exists(self.client, self.location.bucket, key, f"looking up {key}", self.retry)
