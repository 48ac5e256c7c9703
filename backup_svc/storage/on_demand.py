"""What people ask of the storage while they wait — the list, one backup's presigned link, the permission
check — each answered within a deadline, with errors that name the storage and never a key.

Uploads use their own client with long timeouts and patient retries (take.py); this one gives up fast:
a dashboard that says "storage at https://… did not answer" in five seconds is more use than one
that hangs for a minute.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from backup_svc.pg.scrub import scrub

from .bounded import BoundedCalls
from .catalog import CatalogEntry, StoredCatalog
from .client import RetryPolicy, StorageError, describe, make_client
from .holds import Hold, acknowledge_hold, read_holds
from .location import BackupNames
from .ownership import Owner
from .presign import PRESIGN_MAX_S, checked_name, presigned_download_url
from .probe import ProbeReport, endpoint_of, probe_storage
from .settings import StorageSettings

# Per request: connecting and each silence. Within the callers' deadlines below with one retry.
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 4
QUICK_RETRY = RetryPolicy(attempts=2, first_delay_s=0.2, max_delay_s=0.5)
# What a caller waits at most (docs/api.md promises the list's).
LIST_DEADLINE_S = 5
LOOKUP_DEADLINE_S = 5
PROBE_DEADLINE_S = 10
# The permission check writes and deletes a test object: not on every request of a polling script.
PROBE_REUSE_S = 60


class OnDemandStorage:
    """The storage as the dashboard and the API see it: quick to answer, quick to say it cannot."""

    streams_downloads = False  # a download is a 302 to a presigned URL (rclone_on_demand.py streams instead)

    def __init__(self, storage: StorageSettings, backup_name: str, owner: Callable[[], Owner], client=None):
        self.storage = storage
        self.location = storage.location
        self.names = BackupNames(backup_name)
        self.endpoint = endpoint_of(storage)
        self.client = (
            client
            if client is not None
            else make_client(storage.client_env, connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S)
        )
        self.catalog = StoredCatalog(self.client, self.location, self.names, owner, retry=QUICK_RETRY)
        self._calls = BoundedCalls()
        self._probe_lock = threading.Lock()
        self._probe: tuple[float, ProbeReport] | None = None

    def explain(self, exc: BaseException) -> str:
        """A one-line message about a storage failure: where the storage is, what happened, no secret."""
        text = str(exc) if isinstance(exc, StorageError) else describe(exc)
        env = self.storage.client_env
        text = scrub(text, env.get("AWS_SECRET_ACCESS_KEY"), env.get("AWS_SESSION_TOKEN"), env.get("AWS_ACCESS_KEY_ID"))
        return f"The storage at {self.endpoint} ({self.location.url}) could not be read: {text}"

    def backups(self, deadline_s: float = LIST_DEADLINE_S) -> list[CatalogEntry]:
        """This service's stored backups, newest first; StorageError (StorageTimeout) after `deadline_s`."""
        return self._calls.call("list", self.catalog.entries, deadline_s, f"the storage at {self.endpoint}")

    def holds(self, deadline_s: float = LIST_DEADLINE_S) -> list[Hold]:
        """The open shrink alarms (and the latest one), newest first; StorageError after `deadline_s`."""
        return self._calls.call(
            "holds",
            lambda: read_holds(self.client, self.location, retry=QUICK_RETRY),
            deadline_s,
            f"the storage at {self.endpoint}",
        )

    def acknowledge(self, held: str, by: str, deadline_s: float = LOOKUP_DEADLINE_S) -> bool:
        """Acknowledge the alarm holding `held`, ending the hold; False when none is open. NotOurBackup
        for a name that is not one of this service's backup names."""
        checked_name(self.names, held)
        return self._calls.call(
            ("acknowledge", held),
            lambda: acknowledge_hold(self.client, self.location, held, by, retry=QUICK_RETRY),
            deadline_s,
            f"the storage at {self.endpoint}",
        )

    def exists(self, name: str, deadline_s: float = LOOKUP_DEADLINE_S) -> bool:
        """Whether this service's backup `name` is in storage now; NotOurBackup for any other name,
        StorageError when the storage cannot say."""
        checked_name(self.names, name)
        return self._calls.call(
            ("exists", name), lambda: self.catalog.exists(name), deadline_s, f"the storage at {self.endpoint}"
        )

    def download_url(
        self, name: str, deadline_s: float = LOOKUP_DEADLINE_S, expires_s: int = PRESIGN_MAX_S
    ) -> str | None:
        """A presigned GET URL for the stored backup `name`, or None when there is no such backup now.

        NotOurBackup (a ValueError) for a name that is not one of this service's backup names;
        StorageError when the storage cannot say whether it exists.
        """
        if not self.exists(name, deadline_s):
            return None
        return presigned_download_url(self.client, self.location, name, expires_s=expires_s)

    def permissions(self, deadline_s: float = PROBE_DEADLINE_S) -> ProbeReport:
        """The permission check (probe.py), reused for PROBE_REUSE_S; StorageTimeout after `deadline_s`."""
        with self._probe_lock:
            if self._probe is not None and time.monotonic() - self._probe[0] < PROBE_REUSE_S:
                return self._probe[1]
        report = self._calls.call(
            "probe",
            lambda: probe_storage(self.client, self.location, self.endpoint, retry=QUICK_RETRY),
            deadline_s,
            f"the storage at {self.endpoint}",
        )
        with self._probe_lock:
            self._probe = (time.monotonic(), report)
        return report
