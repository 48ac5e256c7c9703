"""This service's stored backups under the prefix, newest first."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .client import RetryPolicy, with_retries
from .location import BackupNames, StorageLocation


@dataclass(frozen=True)
class StoredBackup:
    """One stored backup: its name (the download filename), key, size, time (from the name, UTC), sha256."""

    name: str
    key: str
    size: int
    time: datetime
    sha256: str | None = None  # from the object's metadata; None when not asked for (or missing)
    metadata: dict[str, str] | None = None  # the object's user metadata, when read (with_sha256)


def list_backups(client, location: StorageLocation, names: BackupNames, *, with_sha256: bool = False,
                 retry: RetryPolicy = RetryPolicy()) -> list[StoredBackup]:
    """Every object directly under the prefix whose name is one of this service's backups, newest first.

    Anything else under the prefix (other files, other databases' backups, sub-folders) is left out.
    `with_sha256` reads each object's metadata (one HEAD per backup). StorageError when a page
    cannot be listed: callers must then act on nothing.
    """
    found: list[StoredBackup] = []
    token = None
    while True:
        request = {"Bucket": location.bucket, "Prefix": location.prefix, "MaxKeys": 1000}
        if token:
            request["ContinuationToken"] = token
        page = with_retries(f"listing {location.url}", lambda: client.list_objects_v2(**request), retry)
        for item in page.get("Contents", []):
            name = item["Key"][len(location.prefix):]
            when = names.time_of(name)
            if when is not None:
                found.append(StoredBackup(name=name, key=item["Key"], size=item["Size"], time=when))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    found.sort(key=lambda b: b.time, reverse=True)
    if with_sha256:
        found = [_with_sha256(client, location, backup, retry) for backup in found]
    return found


def _with_sha256(client, location: StorageLocation, backup: StoredBackup, retry: RetryPolicy) -> StoredBackup:
    head = with_retries(f"reading the metadata of {backup.key}",
                        lambda: client.head_object(Bucket=location.bucket, Key=backup.key), retry)
    return StoredBackup(name=backup.name, key=backup.key, size=backup.size, time=backup.time,
                        sha256=head.get("Metadata", {}).get("sha256"), metadata=dict(head.get("Metadata", {})))
