"""Garbage collection of the chunk store, after retention (restic's `prune` is the model).

A chunk is deleted only when (1) no manifest of this backup name under the prefix names it — every
manifest counts, kept or not yet judged, owned or not, and one that cannot be read stops the whole
collection — and (2) it is older than CHUNK_GRACE. Callers hold the stored-backup lock (lock.py), which
every upload to this place holds for its whole run, so no upload can reuse a chunk while it is being
deleted; the grace period also keeps the fresh chunks of an upload that does not share the lock (and of
one that failed a moment ago). Manifests are listed after retention deleted its, and chunks after the
manifests were read. A collection stopped half-way deleted only unreferenced chunks; the next one finishes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from backup_svc.storage.client import RetryPolicy, StorageError, with_retries
from backup_svc.storage.location import StorageLocation

from .chunks import ChunkStore
from .manifest import SUFFIX, BadManifest, MAX_MANIFEST_BYTES, referenced_names

# No upload of this service runs for a day (prune.py's STALE_UPLOAD_AGE says the same of multipart uploads).
CHUNK_GRACE = timedelta(days=1)

log = logging.getLogger(__name__)


@dataclass
class Collection:
    """What a collection found and did."""

    dry_run: bool = False
    manifests: int = 0
    referenced: int = 0
    deleted: list[str] = field(default_factory=list)
    deleted_bytes: int = 0
    young: int = 0  # unreferenced, but within the grace period: kept this time
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not (self.deleted or self.young or self.failed):
            return []
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"chunks: {verb} {len(self.deleted)} ({self.deleted_bytes} bytes) that none of the "
            f"{self.manifests} dedup backups names; {self.referenced} in use"
        ]
        if self.young:
            out.append(
                f"chunks: kept {self.young} that no backup names yet, younger than "
                f"{CHUNK_GRACE.total_seconds() / 3600:g} h (an upload running or just failed)"
            )
        for chunk_id, error in self.failed:
            out.append(f"FAILED  chunk {chunk_id} could not be deleted: {error}")
        return out


def collect_chunks(
    client,
    location: StorageLocation,
    backup_name: str,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Collection:
    """Delete the chunks of `backup_name` that no manifest names and that are older than CHUNK_GRACE.
    StorageError (nothing deleted) when a manifest or a listing cannot be read."""
    now = now or datetime.now(timezone.utc)
    store = ChunkStore(client, location, backup_name, retry)
    report = Collection(dry_run=dry_run)
    referenced: set[str] = set()  # object names: `<id>` in the clear, `<id>.<fp>.age` encrypted
    for key in _manifest_keys(client, location, backup_name, retry):
        referenced |= _read(client, location.bucket, key, retry)
        report.manifests += 1
    chunks = store.objects()  # every object in the folder, clear or encrypted to any recipients
    report.referenced = len(referenced & set(chunks))
    cutoff = now - CHUNK_GRACE
    for chunk_id, info in sorted(chunks.items()):
        if chunk_id in referenced:
            continue
        if info["modified"] >= cutoff:
            report.young += 1
            continue
        if not dry_run:
            try:
                store.delete_object(chunk_id)
            except StorageError as exc:
                report.failed.append((chunk_id, str(exc)))
                continue
        report.deleted.append(chunk_id)
        report.deleted_bytes += info["size"]
    return report


def _manifest_keys(client, location: StorageLocation, backup_name: str, retry: RetryPolicy) -> list[str]:
    """Every object directly under the prefix named like a manifest of `backup_name`, whatever its owner."""
    start, keys = f"{location.prefix}{backup_name}_backup_", []
    request = {"Bucket": location.bucket, "Prefix": start, "Delimiter": "/", "MaxKeys": 1000}
    while True:
        page = with_retries(f"listing {location.url}", lambda: client.list_objects_v2(**request), retry)
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(SUFFIX)]
        if not page.get("IsTruncated"):
            return keys
        request["ContinuationToken"] = page["NextContinuationToken"]


def _read(client, bucket: str, key: str, retry: RetryPolicy) -> set[str]:
    """The chunk object names the manifest `key` names (an encrypted one's without decrypting it)."""

    def get() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_MANIFEST_BYTES + 1)

    data = with_retries(f"reading the manifest {key}", get, retry)
    try:
        return referenced_names(data)
    except BadManifest as exc:
        raise StorageError(
            f"the manifest {key} cannot be read ({exc}), so no chunk can be known unused: "
            f"no chunk was deleted; delete or repair that object"
        ) from None
