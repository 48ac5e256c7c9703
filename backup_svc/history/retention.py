"""History retention (BACKUP_HISTORY_DAYS): events older than that many days are deleted by `prune` and
after each stored backup. It lists and deletes only event keys under `<prefix>_history/`; backup
retention, for its part, only ever looks at backup names directly under the prefix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .bucket import HistoryBucket


@dataclass
class HistoryPruneReport:
    days: int
    cutoff: datetime
    dry_run: bool
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"history: {verb} {len(self.deleted)} event(s) older than {self.days} days "
               f"(before {self.cutoff:%Y-%m-%d %H:%M} UTC, BACKUP_HISTORY_DAYS)"]
        out += [f"history: FAILED to delete {name}: {error}" for name, error in self.failed]
        return out


def prune_history(bucket: HistoryBucket, days: int, *, dry_run: bool = False,
                  now: datetime | None = None) -> HistoryPruneReport:
    """Delete (or with `dry_run` only list) the history events older than `days` days. StorageError when
    the history cannot be listed (nothing was deleted then)."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    deleted, failed = bucket.delete_older_than(cutoff, dry_run=dry_run)
    return HistoryPruneReport(days=days, cutoff=cutoff, dry_run=dry_run, deleted=deleted, failed=failed)
