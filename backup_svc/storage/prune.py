"""Deleting the stored backups retention does not keep, and incomplete uploads left behind.

Safety, each one tested: nothing is deleted when the listing fails; only this service's own backups
(its name pattern directly under the prefix *and* its ownership record in the metadata, with a name
time that can be trusted: ownership.py) are candidates; the newest backup and the one just stored
are never deleted; nothing is deleted while the cluster's identity is unknown; a dry run deletes
nothing and says what would go and why. Objects named like a backup that are not this service's
are reported (`ignored`), never kept in place of a real one. Then the dedup chunk store is collected
(storage/dedup/collect.py: only chunks no remaining manifest names, older than a day).
"""

from __future__ import annotations

import logging

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from backup_svc.storage.dedup.collect import Collection, collect_chunks

from .client import RetryPolicy, StorageError, with_retries
from .companion import delete_companion
from .holds import active_holds, read_holds
from .listing import MetadataCache, StoredBackup, survey_backups
from .location import BackupNames, StorageLocation
from .ownership import Owner
from .retention import Decision, RetentionPolicy, apply_retention, removal_reason, with_holds

# Railway Buckets have no lifecycle rules, so nothing else ever cleans up an upload that a killed
# process left incomplete; no real upload of this service runs for a day.
STALE_UPLOAD_AGE = timedelta(days=1)
# How a backup stored before the ownership record is shown (prune, `list`): it is never deleted automatically.
UNRECORDED_NOTE = "no owner record: stored by an older version; read-only, never deleted automatically"

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    """What prune decided and did."""

    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    removal_reason: str = ""
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, error)
    stale_uploads: list[tuple[str, datetime]] = field(default_factory=list)  # (key, initiated)
    ignored: list[tuple[StoredBackup, str]] = field(default_factory=list)  # named like ours, but not: why
    unrecorded: list[StoredBackup] = field(default_factory=list)  # an older version's, no owner record: kept
    chunks: Collection | None = None  # the dedup chunk store's collection after the deletes (storage/dedup/collect.py)

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    def lines(self) -> list[str]:
        """One line per backup (kept: the rules that keep it; removed: why), then the uploads."""
        verb = "would delete" if self.dry_run else "deleted"
        failed = dict(self.failed)
        out = []
        for decision in self.decisions:
            name = decision.backup.name
            if decision.keep:
                out.append(f"keep    {name}  ({', '.join(decision.reasons)})")
            elif name in failed:
                out.append(f"FAILED  {name}  could not be deleted: {failed[name]}")
            else:
                out.append(f"{verb:<7} {name}  ({self.removal_reason})")
        for backup in self.unrecorded:
            out.append(f"keep    {backup.name}  ({UNRECORDED_NOTE})")
        for backup, reason in self.ignored:
            out.append(f"ignored {backup.name}  (not counted, not deleted: {reason})")
        if "incomplete uploads" in failed:
            out.append(f"FAILED  cleaning up incomplete uploads: {failed['incomplete uploads']}")
        if "chunks" in failed:
            out.append(f"FAILED  collecting unused chunks: {failed['chunks']}")
        if self.chunks is not None:
            out.extend(self.chunks.lines())
        for key, initiated in self.stale_uploads:
            out.append(
                f"{'would abort' if self.dry_run else 'aborted'} incomplete upload of {key} "
                f"(started {initiated:%Y-%m-%d %H:%M} UTC)"
            )
        return out


def prune(
    client,
    location: StorageLocation,
    names: BackupNames,
    owner: Owner,
    policy: RetentionPolicy,
    *,
    keep_key: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
    cache: MetadataCache | None = None,
) -> PruneReport:
    """Apply `policy` to this service's backups under the prefix and abort its day-old incomplete uploads.

    `keep_key` (the object just stored) and backups under a retention hold (holds.py: the last one
    before a shrink alarm) are kept whatever the rules say. StorageError when the listing or the holds
    cannot be read, or the cluster's identity is unknown (then nothing was deleted). A delete that
    fails is reported in `failed` and the others still happen.
    """
    if not owner.can_delete:
        raise StorageError(
            "retention needs the database's cluster identity to tell this service's backups "
            "from others', and the database did not answer: nothing was deleted"
        )
    report = PruneReport(dry_run=dry_run, removal_reason=removal_reason(policy))
    # raises before any delete; `cache` (survey_backups'): metadata read earlier in the same run
    survey = survey_backups(client, location, names, owner, now=now, retry=retry, cache=cache)
    backups, report.ignored, report.unrecorded = survey.backups, survey.ignored, survey.unrecorded
    held = active_holds(read_holds(client, location, retry=retry))  # so does this
    report.decisions = [
        Decision(d.backup, True, ("just stored",)) if d.backup.key == keep_key and not d.keep else d
        for d in with_holds(apply_retention(backups, policy), held)
    ]
    doomed = [d.backup for d in report.removed]
    _check_safe(doomed, backups, location, names, owner, keep_key)
    for backup in doomed:
        if dry_run:
            continue
        try:
            with_retries(
                f"deleting {backup.key}", lambda: client.delete_object(Bucket=location.bucket, Key=backup.key), retry
            )
            report.deleted.append(backup.name)
        except StorageError as exc:
            report.failed.append((backup.name, str(exc)))
            continue
        try:  # after the object: a record left by a failure here names no object and claims nothing
            delete_companion(client, location.bucket, backup.key, retry=retry)
        except StorageError as exc:
            log.warning("%s (harmless: it no longer names an object)", exc)
    try:
        report.stale_uploads = abort_stale_uploads(client, location, names, dry_run=dry_run, now=now, retry=retry)
    except StorageError as exc:
        report.failed.append(("incomplete uploads", str(exc)))
    try:  # after the manifests' deletes, whatever the format now: chunks that only deleted backups named go
        report.chunks = collect_chunks(client, location, names.backup_name, dry_run=dry_run, now=now, retry=retry)
        report.failed.extend(report.chunks.failed)
    except StorageError as exc:
        report.failed.append(("chunks", str(exc)))
    return report


def _check_safe(
    doomed: list[StoredBackup],
    backups: list[StoredBackup],
    location: StorageLocation,
    names: BackupNames,
    owner: Owner,
    keep_key: str | None,
) -> None:
    # Belt and braces: retention cannot produce these, but a delete is the one thing not undone.
    if backups and any(b.key == backups[0].key for b in doomed):
        raise AssertionError("retention chose the newest backup for deletion")
    if any(b.key == keep_key for b in doomed):
        raise AssertionError("retention chose the backup just stored for deletion")
    for backup in doomed:
        if (
            not backup.key.startswith(location.prefix)
            or names.time_of(backup.key[len(location.prefix) :]) is None
            or owner.refusal(backup.metadata) is not None
        ):
            raise AssertionError(f"retention chose {backup.key!r}, which is not one of this service's backups")


def stale_uploads(uploads: list[dict], location: StorageLocation, names: BackupNames, cutoff: datetime) -> list[dict]:
    """The incomplete uploads (as S3 lists them) of this service's backup names under the prefix
    that were started before `cutoff`."""
    return [
        u
        for u in uploads
        if u["Key"].startswith(location.prefix)
        and names.time_of(u["Key"][len(location.prefix) :]) is not None
        and u["Initiated"] < cutoff
    ]


def abort_stale_uploads(
    client,
    location: StorageLocation,
    names: BackupNames,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> list[tuple[str, datetime]]:
    """Abort incomplete multipart uploads of this service's backup names under the prefix started
    over a day ago; return (key, started) of each. Uploads of other names are left alone.

    Callers hold the stored-backup lock, so no upload of this service's own is running meanwhile.
    """
    cutoff = (now or datetime.now(timezone.utc)) - STALE_UPLOAD_AGE
    uploads = _incomplete_uploads(client, location.bucket, location.prefix, retry)
    done = []
    for upload in stale_uploads(uploads, location, names, cutoff):
        if not dry_run:
            _abort(client, location.bucket, upload, retry)
        done.append((upload["Key"], upload["Initiated"]))
    return done


def abort_uploads_of(client, bucket: str, key: str, *, retry: RetryPolicy = RetryPolicy()) -> int:
    """Abort the incomplete uploads of exactly `key` (a run known to be dead, whatever its age); how many."""
    uploads = [u for u in _incomplete_uploads(client, bucket, key, retry) if u["Key"] == key]
    for upload in uploads:
        _abort(client, bucket, upload, retry)
    return len(uploads)


def _incomplete_uploads(client, bucket: str, prefix: str, retry: RetryPolicy) -> list[dict]:
    uploads: list[dict] = []
    request = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = with_retries(
            f"listing incomplete uploads in s3://{bucket}/{prefix}",
            lambda: client.list_multipart_uploads(**request),
            retry,
        )
        uploads.extend(page.get("Uploads", []))
        if not page.get("IsTruncated"):
            return uploads
        request.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))


def _abort(client, bucket: str, upload: dict, retry: RetryPolicy) -> None:
    with_retries(
        f"aborting the incomplete upload of {upload['Key']}",
        lambda: client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]),
        retry,
    )
