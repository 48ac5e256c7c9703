"""The history's events on an rclone remote: the layout of the bucket's (bucket.py), `<path>/_history/
YYYY/MM/DD/<event>`, and the same operations, each one rclone call (storage/rclone_target.py).

Only names below `_history/` that look exactly like an event's are ever listed or deleted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from backup_svc.storage.rclone_target import RcloneTarget

from .bucket import EventFolder
from .event import FOLDER, HistoryEvent, parse_name


@dataclass(frozen=True)
class HistoryRemote(EventFolder):
    """The history folder beside the backups on one rclone remote. `retry` arguments are accepted for the
    bucket's signature; rclone retries on its own (`--low-level-retries`)."""

    target: RcloneTarget  # on the backups' folder

    @property
    def url(self) -> str:
        return f"rclone:{self.target.location.target(FOLDER)}"

    def put(self, event: HistoryEvent, retry=None) -> None:
        """Write one event (the same name and bytes on a retry: writing it twice changes nothing)."""
        self.target.write(FOLDER + event.name, event.data)

    def probe(self, retry=None) -> None:
        """Write and delete a scratch file (not an event's name) in the history folder; StorageError if refused."""
        name = f"{FOLDER}check-{secrets.token_hex(6)}.tmp"
        self.target.write(name, b"backup_svc check\n")
        self.target.remove(name)

    def raw(self, name: str, retry=None) -> bytes:
        return self.target.read(FOLDER + name)

    def days(self, retry=None) -> list[str]:
        """Every `YYYY/MM/DD/` folder, newest first (one recursive listing of folders)."""
        paths = (entry["Path"] + "/" for entry in self.target.entries(FOLDER, dirs_only=True))
        return sorted((p for p in paths if len(p) == 11), reverse=True)

    def names(self, day: str, retry=None) -> list[str]:
        """The event names (below the history folder) in one day folder, oldest first."""
        names = (day + entry["Name"] for entry in self.target.entries(FOLDER + day))
        return sorted(n for n in names if parse_name(n) is not None)

    def delete(self, name: str, retry=None) -> None:
        self.target.remove(FOLDER + name)
