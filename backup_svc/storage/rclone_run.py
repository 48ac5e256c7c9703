"""Stored backups on an rclone remote, with S3's policy: `upload` (pg_dump → RcloneTarget.put, complete
only after pg_dump's success and completion line), the listing of this service's own backups (names,
the ownership record `<name>.owner.json`, the sha256 companion), and restic-style retention that only
ever deletes this service's backups and never the one just stored. Lower room: takes plain values."""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from .client import StorageError
from .location import BackupNames
from .ownership import Owner, time_refusal
from .rclone_target import RECORD_SUFFIX, RcloneTarget, StoredFile
from .retention import RetentionPolicy, apply_retention, removal_reason


class _Pipe:
    """pg_dump's sink on one side, `put`'s chunk iterator (in another thread) on the other."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.reader: threading.Thread | None = None
        self.error: BaseException | None = None

    def _send(self, item) -> None:
        while True:
            try:
                return self.queue.put(item, timeout=0.5)
            except queue.Full:
                if not self.reader.is_alive():  # put gave up (rclone refused): stop pg_dump too
                    raise StorageError(f"the upload failed: {self.error}") from self.error

    def write(self, data) -> int:
        self._send(bytes(data))
        return len(data)

    def chunks(self):
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


def upload(target: RcloneTarget, backup_name: str, name: str, dump) -> tuple[StoredFile, Owner]:
    """Store one backup: `dump(sink)` is write_backup (returns BackupWritten only after pg_dump's success).
    The move into place, the ownership record and the sha256 companion happen only after it returned
    and the sizes and hashes agree; on every other path the temporary object is removed and this raises."""
    pipe, box = _Pipe(), {}

    def records() -> dict[str, bytes]:
        written = box["written"]
        owner = Owner(backup_name, written.facts.database, written.facts.system_identifier or None)
        box["owner"] = owner
        record = {**owner.metadata(), "sha256": written.sha256, "size": str(written.gzip_bytes),
                  "server-version": written.facts.version, "pg-dump-version": written.pg_dump.version}
        return {f"{name}{RECORD_SUFFIX}": json.dumps(record, indent=1).encode()}

    def put() -> None:
        try:
            box["stored"] = target.put(name, pipe.chunks(), records)
        except BaseException as exc:
            pipe.error = exc

    pipe.reader = threading.Thread(target=put, name="rclone-put", daemon=True)
    pipe.reader.start()
    try:
        written = dump(pipe)
        if pipe.reader.is_alive():
            box["written"] = written  # before the end mark: put() reads it once the chunks ended
        pipe._send(None)
    except BaseException as exc:
        if pipe.reader.is_alive():
            pipe.queue.put(exc)  # put() sees the failure, kills rcat and removes its temporary object
        pipe.reader.join()
        raise
    pipe.reader.join()
    if pipe.error is not None:
        raise pipe.error
    stored = box["stored"]
    if stored.sha256 != written.sha256 or stored.size != written.gzip_bytes:
        target.delete(name)
        raise StorageError("the bytes uploaded differ from the bytes the dump produced; the copy was deleted")
    return stored, box["owner"]


@dataclass(frozen=True)
class RcloneBackup:
    name: str
    size: int
    time: datetime
    sha256: str | None
    metadata: dict


def _modified(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def survey(target: RcloneTarget, names: BackupNames, owner: Owner) -> tuple[list[RcloneBackup], list[tuple[str, str]]]:
    """(this service's backups newest first, [(name, why not listed)]) — other files are not mentioned."""
    now, ours, ignored = datetime.now(timezone.utc), [], []
    for stored in target.list():
        when = names.time_of(stored.name)
        if when is None:
            continue
        record = _record(target, stored.name)
        record["sha256"] = stored.sha256 if stored.sha256 == record.get("sha256") else ""
        reason = owner.refusal(record) or time_refusal(when, _modified(stored.time), now)
        backup = RcloneBackup(stored.name, stored.size, when, stored.sha256, record)
        (ignored.append((stored.name, reason)) if reason else ours.append(backup))
    return sorted(ours, key=lambda b: b.time, reverse=True), ignored


def _record(target: RcloneTarget, name: str) -> dict:
    if not target.exists(f"{name}{RECORD_SUFFIX}"):
        return {}
    try:
        data = json.loads(b"".join(target.open(f"{name}{RECORD_SUFFIX}")))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def prune(target: RcloneTarget, names: BackupNames, owner: Owner, policy: RetentionPolicy, *,
          dry_run: bool = False, keep: str | None = None) -> list[tuple[str, str]]:
    """Apply `policy` to this service's backups; [(name, "kept: reasons" | "deleted: why")] newest first.
    Refuses to delete anything when the database could not say who we are (owner.can_delete)."""
    if not owner.can_delete:
        raise StorageError("the database's identity is unknown, so no backup is deleted")
    backups, _ = survey(target, names, owner)
    lines = []
    for decision in apply_retention(backups, policy):
        name = decision.backup.name
        if decision.keep or name == keep:
            lines.append((name, "kept: " + (", ".join(decision.reasons) or "just stored")))
            continue
        if not dry_run:
            target.delete(name)
        lines.append((name, ("would delete: " if dry_run else "deleted: ") + removal_reason(policy)))
    return lines
