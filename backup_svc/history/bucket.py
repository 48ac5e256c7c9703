"""The history's objects in the bucket: write one event, list the day folders and their events, read one,
delete old ones. Plain S3 calls with the storage client's retries; nothing here runs in the background.

Only keys below `<prefix>_history/` that look exactly like an event's key are ever listed or deleted:
backups, their companions and anything else under the prefix are never touched.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from backup_svc.storage.client import RetryPolicy, StorageError, with_retries

from .event import HistoryEvent, history_prefix, parse_name

# A history read or write is small; a few quick tries, then the caller's own retry loop (the writer) or
# the next refresh takes over.
QUICK = RetryPolicy(attempts=2, first_delay_s=0.2, max_delay_s=0.5)


class EventFolder:
    """What every place that holds the history shares: reading an event and the retention of old ones,
    on top of each place's own `raw`, `days`, `names` and `delete` (HistoryBucket here, HistoryRemote in
    remote.py for rclone remotes)."""

    def get(self, name: str, retry: RetryPolicy = QUICK) -> HistoryEvent:
        """Read one event; StorageError when it cannot be read, ValueError when it is not JSON."""
        return HistoryEvent.from_bytes(name, self.raw(name, retry))

    def delete_older_than(
        self, cutoff: datetime, *, dry_run: bool = False, retry: RetryPolicy = RetryPolicy()
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Delete the events whose time (from the key) is before `cutoff`; (deleted, [(name, error)]).

        Only whole day folders before the cutoff's day, and events of the cutoff's day older than it,
        are looked at; StorageError when the folders cannot be listed (then nothing was deleted).
        """
        deleted, failed = [], []
        day_of_cutoff = cutoff.strftime("%Y/%m/%d/")
        for day in self.days(retry):
            if day > day_of_cutoff:
                continue
            for name in self.names(day, retry):
                facts = parse_name(name)
                if facts is None or facts.time >= cutoff:
                    continue
                if dry_run:
                    deleted.append(name)
                    continue
                try:
                    self.delete(name, retry)
                    deleted.append(name)
                except StorageError as exc:
                    failed.append((name, str(exc)))
        return deleted, failed


@dataclass(frozen=True)
class HistoryBucket(EventFolder):
    """The history folder of one storage location, reached through `client`."""

    client: object
    bucket: str
    prefix: str  # the storage prefix ("" or ending in "/"); the history is `<prefix>_history/`

    @property
    def root(self) -> str:
        return history_prefix(self.prefix)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.root}"

    def put(self, event: HistoryEvent, retry: RetryPolicy = QUICK) -> None:
        """Write one event (the same key and bytes on a retry: writing it twice changes nothing)."""
        with_retries(
            f"writing history event {event.name}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self.root + event.name,
                Body=event.data,
                ContentType="application/json",
                Metadata={"sha256": event.sha256},
            ),
            retry,
        )

    def probe(self, retry: RetryPolicy = QUICK) -> None:
        """Write and delete a scratch object (not an event's name) in the history folder; StorageError if refused.

        Its delete is tried first, while the object does not exist: where deleting is refused nothing is written,
        so `check` leaves nothing behind (docs/storage.md), as the storage probe does."""
        key = f"{self.root}check-{secrets.token_hex(6)}.tmp"

        def delete():
            return self.client.delete_object(Bucket=self.bucket, Key=key)

        with_retries("deleting in the history (before writing its test object)", delete, retry)
        with_retries(
            "writing to the history",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=b"backup_svc check\n"),
            retry,
        )
        with_retries("deleting the history's test object", delete, retry)

    def raw(self, name: str, retry: RetryPolicy = QUICK) -> bytes:
        """The stored bytes of one event; StorageError when it cannot be read."""
        response = with_retries(
            f"reading history event {name}",
            lambda: self.client.get_object(Bucket=self.bucket, Key=self.root + name),
            retry,
        )
        return response["Body"].read()

    def _common_prefixes(self, below: str, retry: RetryPolicy) -> list[str]:
        found, token = [], None
        while True:
            request = {"Bucket": self.bucket, "Prefix": self.root + below, "Delimiter": "/"}
            if token:
                request["ContinuationToken"] = token
            page = with_retries(f"listing {self.url}{below}", lambda: self.client.list_objects_v2(**request), retry)
            found += [p["Prefix"][len(self.root) :] for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def days(self, retry: RetryPolicy = QUICK) -> list[str]:
        """Every `YYYY/MM/DD/` folder that holds events, newest first (one listing per year and month)."""
        days = []
        for year in self._common_prefixes("", retry):
            for month in self._common_prefixes(year, retry):
                days += self._common_prefixes(month, retry)
        return sorted((d for d in days if len(d) == 11), reverse=True)

    def names(self, day: str, retry: RetryPolicy = QUICK) -> list[str]:
        """The event keys (below the history prefix) in one day folder, oldest first."""
        names, token = [], None
        while True:
            request = {"Bucket": self.bucket, "Prefix": self.root + day, "MaxKeys": 1000}
            if token:
                request["ContinuationToken"] = token
            page = with_retries(f"listing {self.url}{day}", lambda: self.client.list_objects_v2(**request), retry)
            names += [item["Key"][len(self.root) :] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        return sorted(n for n in names if parse_name(n) is not None)

    def delete(self, name: str, retry: RetryPolicy = QUICK) -> None:
        with_retries(
            f"deleting history event {name}",
            lambda: self.client.delete_object(Bucket=self.bucket, Key=self.root + name),
            retry,
        )
