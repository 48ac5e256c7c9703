"""Which stored objects are this service's backups: the ownership record in their metadata, and names
whose time cannot be trusted.

A name alone proves nothing: two services whose databases share a name (every Railway database is
called `railway`) write the same names, and anyone can put a file under the prefix. An object counts
as one of this service's backups only when its metadata says it was written by backup_svc, for this
backup name, this database and this PostgreSQL cluster (its system identifier, which differs between
any two clusters), and carries the sha256 an upload attaches last. Nothing else is listed, kept,
deleted or counted as fresh; it is reported instead.

The time in a name is trusted only when it is not in the future and not later than the object's
own LastModified by more than TIME_MARGIN: a name is stamped when the dump starts, the object is
written after it, so only a clock that ran ahead (or a hand-made name) can be later.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping

WRITER = "backup_svc"
# Clock differences between this service and the storage provider that are not yet suspicious.
TIME_MARGIN = timedelta(minutes=15)


@dataclass(frozen=True)
class Owner:
    """Whose backups these are: the backup name, the database and its cluster's system identifier.

    `system_identifier` is None when the database could not be asked; the other three then decide,
    which is enough to show a list but not to delete anything (`can_delete`).
    """

    backup_name: str
    database: str
    system_identifier: str | None

    @property
    def can_delete(self) -> bool:
        return bool(self.system_identifier)

    def metadata(self) -> dict[str, str]:
        """The ownership record an upload writes into the object's metadata."""
        return {
            "written-by": WRITER,
            "backup-name": self.backup_name,
            "database": self.database,
            "system-identifier": self.system_identifier or "",
        }

    def refusal(self, metadata: Mapping[str, str]) -> str | None:
        """None when `metadata` says the object is one of this service's backups, else why not."""
        if metadata.get("written-by") != WRITER:
            return "no ownership record: not written by backup_svc's upload (or by an older version)"
        if not metadata.get("sha256"):
            return "no sha256: its upload did not finish (attaching the final metadata failed)"
        theirs = (metadata.get("backup-name"), metadata.get("database"), metadata.get("system-identifier"))
        ours = (self.backup_name, self.database, self.system_identifier)
        if theirs[:2] != ours[:2] or (self.system_identifier is not None and theirs[2] != ours[2]):
            return (
                f"another service's backup (backup name {theirs[0]!r}, database {theirs[1]!r}, "
                f"cluster {theirs[2] or '?'})"
            )
        return None

    def is_unrecorded(self, metadata: Mapping[str, str]) -> bool:
        """True for a complete backup an older backup_svc (before the ownership record) stored under this
        backup name: its sha256 and backup name, no `written-by`. Listed read-only: downloadable,
        verifiable, restorable, never deleted or counted by retention or staleness (nothing proves
        which database or cluster it is of)."""
        return (
            metadata.get("written-by") is None
            and bool(metadata.get("sha256"))
            and metadata.get("backup-name") == self.backup_name
        )

    def is_other_service(self, metadata: Mapping[str, str]) -> bool:
        """True when the object was written by backup_svc for another service (check warns about these)."""
        return (
            metadata.get("written-by") == WRITER and self.refusal(metadata) is not None and bool(metadata.get("sha256"))
        )


def time_refusal(name_time: datetime, modified: datetime | None, now: datetime) -> str | None:
    """None when a name's time can be trusted, else why not (see the module docstring)."""
    if name_time > now + TIME_MARGIN:
        return f"its name's time {name_time:%Y-%m-%d %H:%M:%S} UTC lies in the future"
    if modified is not None and name_time > modified + TIME_MARGIN:
        return (
            f"its name's time {name_time:%Y-%m-%d %H:%M:%S} UTC is later than when it was written "
            f"({modified:%Y-%m-%d %H:%M:%S} UTC)"
        )
    return None


class OwnerLookup:
    """This service's Owner, asking the database (`identify`) for its cluster's system identifier
    until it has answered once; until then the Owner has none (enough to list, not to delete)."""

    def __init__(self, backup_name: str, database: str, identify: Callable[[], str]):
        self.backup_name = backup_name
        self.database = database
        self._identify = identify
        self._system_identifier: str | None = None
        self._asking = threading.Lock()

    def get(self, *, wait: bool = True) -> Owner:
        """The Owner; with `wait=False` (a page: the list must not wait for a database that is down) the
        database is asked in the background and this call answers with what is known now."""
        if self._system_identifier is None:
            if wait:
                self._ask()
            elif self._asking.acquire(blocking=False):
                self._asking.release()
                threading.Thread(target=self._ask, name="owner-lookup", daemon=True).start()
        return Owner(self.backup_name, self.database, self._system_identifier)

    def get_now(self) -> Owner:
        """`get(wait=False)`: for callers that take a plain callable."""
        return self.get(wait=False)

    def _ask(self) -> None:
        with self._asking:
            if self._system_identifier is not None:
                return
            try:
                self._system_identifier = self._identify() or None
            except Exception:  # the database is down: the list is still shown, nothing is deleted
                pass
