"""The shrink alarm's check after each stored backup: read the earlier backups' records, compare, and
place the retention hold when the new one shrank (shape.py has the rule, holds.py the hold)."""

from __future__ import annotations

import logging

from .client import RetryPolicy
from .holds import place_hold, read_holds
from .listing import MetadataCache, backup_size, survey_backups
from .ownership import Owner
from .location import BackupNames, StorageLocation
from .shape import WINDOW, BackupShape, ShrinkFinding, detect_shrink, shape_of
from .upload import StoredObject

log = logging.getLogger(__name__)


def check_shrink(
    client,
    location: StorageLocation,
    names: BackupNames,
    stored: StoredObject,
    threshold: float | None,
    *,
    owner: Owner,
    retry: RetryPolicy = RetryPolicy(),
    cache: MetadataCache | None = None,
) -> ShrinkFinding | None:
    """Compare the backup just stored with the WINDOW before it; on a drop, hold the one before and
    return the finding. StorageError when the bucket cannot be read or the hold not written.
    `cache`: the backups' metadata, as survey_backups keeps it (a run's retention then reads no backup twice)."""
    if threshold is None:
        return None
    name = stored.key[len(location.prefix) :]
    when = names.time_of(name)
    if when is None:
        return None
    new = shape_of(name, when, backup_size(stored.size, stored.metadata), stored.metadata)
    # the same real backups retention and staleness read (listing.py), never another service's
    backups = survey_backups(client, location, names, owner, retry=retry, cache=cache).backups
    earlier = [b for b in backups if b.time < when][:WINDOW]
    shapes: list[BackupShape] = []
    for backup in earlier:
        shapes.append(shape_of(backup.name, backup.time, backup.size, backup.metadata))
    holds = read_holds(client, location, retry=retry)
    # after an alarm (acknowledged or not), the new level is the baseline: one alarm per drop
    since = holds[0].finding.time if holds else None
    finding = detect_shrink(new, shapes, threshold, since=since)
    if finding is not None:
        place_hold(client, location, finding, retry=retry)
        log.warning(
            "%s shrank: %s %d is %.1f %% below the median %.0f of the %d backups before it; "
            "retention keeps %s until the alarm is acknowledged",
            name,
            finding.measure,
            finding.value,
            finding.drop_percent,
            finding.median,
            finding.compared,
            finding.held,
        )
    return finding
