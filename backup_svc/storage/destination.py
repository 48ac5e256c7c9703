"""Where `serve` stores backups — a bucket (`s3://`) or an rclone remote (`rclone:`) — behind the few calls the
scheduler, the staleness watch and the dashboard make of either (the datasette `publish/` shape: one module
per destination, the shared policy above them):

  take(options, name=…, …)   one stored backup, start to finish (take.py / rclone_store.py)
  prompt(backup_name, owner) what a waiting person asks: the list, a download, permissions (on_demand.py /
                             rclone_on_demand.py)
  newest(backup_name, owner) this service's newest stored backup (the staleness alarm's input)
  marker(name)               what a run marker records, and `clean_after_kill(facts)` what the next worker
                             removes when a worker was killed mid-upload (serving/unfinished.py)
"""

from __future__ import annotations

from typing import Callable

from .client import make_client
from .listing import list_backups
from .location import BackupNames
from .ownership import Owner
from .on_demand import OnDemandStorage
from .prune import abort_uploads_of
from .rclone_on_demand import RemoteOnDemand
from .rclone_run import survey
from .rclone_store import take_remote_backup
from .rclone_target import RcloneTarget
from .take import take_stored_backup
from .settings import StorageSettings


class BucketDestination:
    """Stored backups in an S3 bucket under a prefix."""

    def __init__(self, storage: StorageSettings):
        self.storage = storage
        self.url = storage.location.url

    def take(self, options, **run):
        """One stored backup; `run` is take_stored_backup's keywords (name, application_name, progress, …)."""
        return take_stored_backup(options, self.storage, **run)

    def prompt(self, backup_name: str, owner: Callable[[], Owner]):
        return OnDemandStorage(self.storage, backup_name, owner)

    def newest(self, backup_name: str, owner: Owner):
        backups = list_backups(
            make_client(self.storage.client_env), self.storage.location, BackupNames(backup_name), owner
        )
        return backups[0] if backups else None

    def marker(self, name: str) -> dict:
        return {"bucket": self.storage.location.bucket, "key": self.storage.location.key(name)}

    def clean_after_kill(self, facts: dict) -> int:
        """Abort the killed run's incomplete upload (exactly its key); how many were aborted."""
        return abort_uploads_of(make_client(self.storage.client_env), facts["bucket"], facts["key"])


class RemoteDestination:
    """Stored backups in a folder of an rclone remote (rclone_target.py)."""

    def __init__(self, storage: StorageSettings):
        self.storage = storage
        self.url = storage.location.url

    def target(self, stall_timeout_s: int = 60):
        return RcloneTarget(self.storage.location, self.storage.client_env, stall_timeout_s=stall_timeout_s)

    def take(self, options, **run):
        """One stored backup; `run` is take_remote_backup's keywords (name, application_name, progress, …)."""
        return take_remote_backup(options, self.target(options.stall_timeout_s), self.storage.retention, **run)

    def prompt(self, backup_name: str, owner: Callable[[], Owner]):
        return RemoteOnDemand(self.storage.location, self.storage.client_env, backup_name, owner)

    def newest(self, backup_name: str, owner: Owner):
        backups, _ = survey(self.target(), BackupNames(backup_name), owner)
        return backups[0] if backups else None

    def marker(self, name: str) -> dict:
        return {"remote": self.url, "key": self.storage.location.target(name)}

    def clean_after_kill(self, facts: dict) -> int:
        """Remove the killed run's temporary object (`.partial-<random>-<its name>`); how many were removed."""
        target, name = self.target(), facts["name"]
        left = [n for n in target.leftovers() if n.endswith(f"-{name}")]
        for temp in left:
            target.remove(temp)
        return len(left)


def destination_for(storage: StorageSettings) -> BucketDestination | RemoteDestination:
    """The destination BACKUP_STORAGE_URL names."""
    return RemoteDestination(storage) if storage.is_rclone else BucketDestination(storage)
