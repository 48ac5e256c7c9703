"""What people ask of an rclone remote while they wait — the list, one backup's bytes, the permission check —
with OnDemandStorage's shape (on_demand.py), so the dashboard and the API read either the same way.

A remote has no presigned links: a download streams through this service (`rclone cat`, one 64 KiB chunk
in this process at a time), so `streams_downloads` is True and `download_url` is never asked.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from backup_svc.pg.scrub import scrub

from .bounded import BoundedCalls
from .catalog import CatalogEntry, entry_from_metadata
from .listing import StoredBackup
from .location import BackupNames
from .ownership import Owner
from .presign import checked_name
from .probe import ProbeReport
from .on_demand import LIST_DEADLINE_S, LOOKUP_DEADLINE_S, PROBE_DEADLINE_S, PROBE_REUSE_S
from .rclone_probe import describe_remote, probe_rclone
from .rclone_run import RecordCache, survey
from .rclone_target import RcloneLocation, RcloneTarget

# A person waits: short bounds per rclone call (the deadlines above still bound the whole answer).
CONNECT_TIMEOUT_S = 3
STALL_TIMEOUT_S = 5
# Railway ends an HTTP request after 15 minutes: a download streamed through the service must fit in it.
HTTP_LIMIT_S = 15 * 60
# `rclone cat` of a 170 MB stored backup through this service (bench/rclone_download.py, 5 rounds, median;
# 2026-12-05): a loopback `rclone serve webdav` on a 2-core machine shared with other work (load average 3.5;
# 204 MB/s in a quieter run). A real remote over the internet is far slower: the page says so.
MEASURED_MB_S = 174.0
MEASURED_ON = "loopback rclone serve webdav on the development machine (bench/rclone_download.py), not a real remote"
# What the page sets beside it: a plausible real link, and what fits in the limit at that rate.
EXAMPLE_MB_S = 5.0


class UnrecordedNone:
    """The remote has no backups of older versions without an ownership record (every one has it)."""

    unrecorded: list = []


class RemoteOnDemand:
    """The rclone remote as the dashboard and the API see it: quick to answer, quick to say it cannot."""

    streams_downloads = True

    def __init__(self, location: RcloneLocation, env: dict[str, str], backup_name: str, owner: Callable[[], Owner]):
        self.location = location
        self.names = BackupNames(backup_name)
        self.endpoint = describe_remote(location.remote, env)
        self.env = env
        self.owner = owner
        self.target = RcloneTarget(
            location, env, connect_timeout_s=CONNECT_TIMEOUT_S, stall_timeout_s=STALL_TIMEOUT_S, retries=1
        )
        # a download runs as long as the transfer does: rclone's own stall bound, not the listing's
        self.reader = RcloneTarget(location, env)
        self.catalog = UnrecordedNone()
        self._cache: RecordCache = {}
        self._calls = BoundedCalls()
        self._probe_lock = threading.Lock()
        self._probe: tuple[float, ProbeReport] | None = None

    def explain(self, exc: BaseException) -> str:
        """A one-line message about a failure: which remote, what happened, no secret."""
        secrets = [
            v for k, v in self.env.items() if k.endswith(("_PASS", "_TOKEN", "_KEY", "_SECRET", "_PEM", "_PASSWORD"))
        ]
        return f"The storage at {self.endpoint} ({self.location.url}) could not be read: {scrub(str(exc), *secrets)}"

    def _entries(self) -> list[CatalogEntry]:
        backups, _ = survey(self.target, self.names, self.owner(), cache=self._cache)
        return [
            entry_from_metadata(
                StoredBackup(
                    name=b.name,
                    key=self.location.target(b.name),
                    size=b.size,
                    time=b.time,
                    sha256=b.sha256,
                    modified=b.modified,
                    metadata=b.metadata,
                ),
                b.metadata,
            )
            for b in backups
        ]

    def backups(self, deadline_s: float = LIST_DEADLINE_S) -> list[CatalogEntry]:
        """This service's backups on the remote, newest first; StorageError (StorageTimeout) after `deadline_s`."""
        return self._calls.call("list", self._entries, deadline_s, f"the storage at {self.endpoint}")

    def holds(self, deadline_s: float = LIST_DEADLINE_S) -> list:
        """No shrink alarms are kept on a remote (its uploads do not run the shrink check)."""
        return []

    def acknowledge(self, held: str, by: str, deadline_s: float = LOOKUP_DEADLINE_S) -> bool:
        checked_name(self.names, held)
        return False

    def size_of(self, name: str, deadline_s: float = LOOKUP_DEADLINE_S) -> int | None:
        """The size of this service's backup `name`, or None when there is none now. NotOurBackup for a name
        that is not one of this service's; StorageError when the remote cannot say."""
        checked_name(self.names, name)
        backups = self._calls.call("list", self._entries, deadline_s, f"the storage at {self.endpoint}")
        return next((e.backup.size for e in backups if e.backup.name == name), None)

    def exists(self, name: str, deadline_s: float = LOOKUP_DEADLINE_S) -> bool:
        return self.size_of(name, deadline_s) is not None

    def open(self, name: str) -> Iterator[bytes]:
        """The stored bytes as a stream (`rclone cat`); the child is killed when the iterator is closed."""
        return self.reader.open(name)

    def permissions(self, deadline_s: float = PROBE_DEADLINE_S) -> ProbeReport:
        """The permission check (rclone_probe.py), reused for PROBE_REUSE_S; StorageTimeout after `deadline_s`."""
        with self._probe_lock:
            if self._probe is not None and time.monotonic() - self._probe[0] < PROBE_REUSE_S:
                return self._probe[1]
        report = self._calls.call(
            "probe", lambda: probe_rclone(self.target, self.endpoint), deadline_s, f"the storage at {self.endpoint}"
        )
        with self._probe_lock:
            self._probe = (time.monotonic(), report)
        return report


def download_limit(measured_mb_s: float = MEASURED_MB_S, measured_on: str = MEASURED_ON) -> dict:
    """What the dashboard says about downloads streamed through the service (docs/api.md `download`): an rclone
    remote's by default, a dedup backup's with sqlgz.py's measured rate."""
    return {
        "via": "service",
        "http_limit_s": HTTP_LIMIT_S,
        "measured_mb_s": measured_mb_s,
        "measured_on": measured_on,
        "max_bytes": int(measured_mb_s * 1e6 * HTTP_LIMIT_S),
        "example_mb_s": EXAMPLE_MB_S,
        "example_max_bytes": int(EXAMPLE_MB_S * 1e6 * HTTP_LIMIT_S),
    }
