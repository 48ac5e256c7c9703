"""History retention (BACKUP_HISTORY_DAYS): events older than that many days are deleted by `prune` and
after each stored backup. It lists and deletes only event keys under `<prefix>_history/`; backup
retention, for its part, only ever looks at backup names directly under the prefix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from backup_svc.storage.client import StorageError
from backup_svc.storage.settings import StorageSettings

from .bucket import HistoryBucket

log = logging.getLogger(__name__)


@dataclass
class HistoryPruneReport:
    days: int
    cutoff: datetime
    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"history: {verb} {len(self.deleted)} event(s) older than {self.days} days "
            f"(before {self.cutoff:%Y-%m-%d %H:%M} UTC, BACKUP_HISTORY_DAYS)"
        ]
        out += [f"history: FAILED to delete {name}: {error}" for name, error in self.failed]
        return out


def prune_history(
    bucket: HistoryBucket, days: int, *, dry_run: bool = False, now: datetime | None = None
) -> HistoryPruneReport:
    """Delete (or with `dry_run` only list) the history events older than `days` days. StorageError when
    the history cannot be listed (nothing was deleted then)."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    deleted, failed = bucket.delete_older_than(cutoff, dry_run=dry_run)
    return HistoryPruneReport(days=days, cutoff=cutoff, dry_run=dry_run, deleted=deleted, failed=failed)


def pruning_after_backup(storage: StorageSettings) -> Callable[[Any], None]:
    """BACKUP_HISTORY_DAYS after each stored backup, as the `after` hook storage/take.py (called with its S3
    client) and rclone_store.py (with its rclone target) take: only history events are deleted, and a
    failure is only logged."""
    if storage.is_rclone:
        return pruning_remote_after_backup(storage.history_days)
    return lambda client: _prune_logged(
        HistoryBucket(client, storage.location.bucket, storage.location.prefix), storage.history_days
    )


def pruning_remote_after_backup(days: int) -> Callable[[Any], None]:
    """The same for an rclone remote's `_history/` (`upload` to a remote has no StorageSettings)."""
    from .remote import HistoryRemote

    return lambda target: _prune_logged(HistoryRemote(target), days)


def _prune_logged(history, days: int) -> None:
    try:
        report = prune_history(history, days)
    except StorageError as exc:
        log.warning("history retention failed (the backup is stored; `prune` tries again): %s", exc)
        return
    if report.deleted or report.failed:
        log.info("; ".join(report.lines()))
