"""This service's stored backups under the prefix, newest first — the one "real backups" set that
retention, staleness, the dashboard, `list` and `check` all read.

An object is in it only when its name is one of this service's backup names, its metadata holds
this service's ownership record, and its name's time can be trusted (ownership.py). Backups an
older version stored before the ownership record are in `unrecorded`: shown read-only, never acted
on. Every other object named like a backup is reported in `ignored`, with the reason.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping

from .companion import with_companion
from .sameobject import TOKEN
from .client import RetryPolicy, error_code, with_retries
from .location import BackupNames, StorageLocation
from .ownership import Owner, time_refusal

# HEADs in parallel: a first listing of a few dozen backups takes a few round trips, not dozens.
HEAD_WORKERS = 4


@dataclass(frozen=True)
class StoredBackup:
    """One stored backup: its name (the download filename), key, size, time (from the name, UTC), sha256."""

    name: str
    key: str
    size: int
    time: datetime
    sha256: str | None = None  # from the object's metadata
    modified: datetime | None = None  # the object's LastModified, as the storage reports it
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class Survey:
    """The real backups (newest first) and the objects named like one that are not, with why."""

    backups: list[StoredBackup] = field(default_factory=list)
    ignored: list[tuple[StoredBackup, str]] = field(default_factory=list)
    # stored by an older version, before the ownership record (Owner.is_unrecorded): shown read-only
    unrecorded: list[StoredBackup] = field(default_factory=list)


# (key, LastModified, ETag) -> user metadata: an object is never overwritten, and attaching its
# final metadata (a copy onto itself) changes its LastModified, so a remembered answer stays right.
MetadataCache = dict


def survey_backups(
    client,
    location: StorageLocation,
    names: BackupNames,
    owner: Owner,
    *,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
    cache: MetadataCache | None = None,
) -> Survey:
    """List the prefix, read each backup-named object's metadata (one HEAD each, remembered in `cache`)
    and sort the objects into this service's backups and the others. StorageError when storage
    cannot be read: callers must then act on nothing."""
    now = now or datetime.now(timezone.utc)
    named = _named_objects(client, location, names, retry)
    cache = cache if cache is not None else {}
    missing = [item for item in named if item[1] not in cache]
    if missing:
        head = _header(client, location, retry)
        with ThreadPoolExecutor(max_workers=HEAD_WORKERS, thread_name_prefix="storage-head") as pool:
            for (_, ident, _), metadata in zip(missing, pool.map(lambda item: head(item[0].key), missing)):
                cache[ident] = metadata
    for gone in set(cache) - {ident for _, ident, _ in named}:  # deleted since: forget it
        del cache[gone]
    # an upload of ours that has no sha256 record yet may get one any moment: asked again next time
    unfinished = {ident for ident, metadata in cache.items() if metadata.get(TOKEN) and not metadata.get("sha256")}
    survey = Survey()
    for backup, ident, _ in named:
        metadata = cache[ident]
        backup = StoredBackup(
            name=backup.name,
            key=backup.key,
            size=backup_size(backup.size, metadata),
            time=backup.time,
            sha256=metadata.get("sha256"),
            modified=backup.modified,
            metadata=metadata,
        )
        badly_timed = time_refusal(backup.time, backup.modified, now)
        reason = owner.refusal(metadata) or badly_timed
        if reason is None:
            survey.backups.append(backup)
        elif badly_timed is None and owner.is_unrecorded(metadata):
            survey.unrecorded.append(backup)
        else:
            survey.ignored.append((backup, reason))
    survey.backups.sort(key=lambda b: b.time, reverse=True)
    survey.unrecorded.sort(key=lambda b: b.time, reverse=True)
    for ident in unfinished:
        del cache[ident]
    return survey


def backup_size(object_size: int, metadata: Mapping[str, str]) -> int:
    """A backup's size: its object's, or for a dedup manifest the compressed size of all the chunks it names
    (what it occupies alone, comparable with a .sql.gz; chunks shared with other backups are counted in each)."""
    try:
        return int(metadata["dedup-stored-bytes"])
    except (KeyError, ValueError):
        return object_size


def list_backups(client, location: StorageLocation, names: BackupNames, owner: Owner, **when) -> list[StoredBackup]:
    """This service's backups under the prefix, newest first (see `survey_backups`; `when`: its now= and retry=)."""
    return survey_backups(client, location, names, owner, **when).backups


def _named_objects(client, location: StorageLocation, names: BackupNames, retry: RetryPolicy):
    """(StoredBackup without metadata, identity, raw item) of each object directly under the prefix
    whose name is one of this service's backup names."""
    found = []
    token = None
    while True:
        # Delimiter: backups are the prefix's direct children; the history's events (`_history/…`) and
        # any other folder are not paged through.
        request = {"Bucket": location.bucket, "Prefix": location.prefix, "Delimiter": "/", "MaxKeys": 1000}
        if token:
            request["ContinuationToken"] = token
        page = with_retries(f"listing {location.url}", lambda: client.list_objects_v2(**request), retry)
        for item in page.get("Contents", []):
            name = item["Key"][len(location.prefix) :]
            when = names.time_of(name)
            if when is not None:
                backup = StoredBackup(
                    name=name, key=item["Key"], size=item["Size"], time=when, modified=item.get("LastModified")
                )
                found.append((backup, (item["Key"], item.get("LastModified"), item.get("ETag")), item))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]
    return found


def _header(client, location: StorageLocation, retry: RetryPolicy) -> Callable[[str], dict[str, str]]:
    def head_once(key: str) -> dict[str, str]:
        try:
            head = client.head_object(Bucket=location.bucket, Key=key)
            return with_companion(
                client,
                location.bucket,
                key,
                head.get("Metadata", {}),
                etag=head.get("ETag"),
                size=head.get("ContentLength"),
                retry=retry,
            )
        except Exception as exc:
            if error_code(exc)[1] == 404:  # deleted since the listing: nothing to own
                return {}
            raise

    def head(key: str) -> dict[str, str]:
        return with_retries(f"reading the metadata of {key}", lambda: head_once(key), retry)

    return head
