"""Stored backups on an rclone remote, with S3's policy: `upload` (pg_dump → RcloneTarget.put, complete
only after pg_dump's success and completion line), the listing of this service's own backups (names,
the ownership record `<name>.owner.json`, the sha256 companion), and restic-style retention that only
ever deletes this service's backups and never the one just stored. Lower room: takes plain values."""

from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable
from datetime import datetime, timezone

from backup_svc.crypto.labels import recipients_metadata
from backup_svc.dump.rowcount import counts_metadata

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


def upload(
    target: RcloneTarget,
    backup_name: str,
    name: str,
    dump,
    cancelled: Callable[[], bool] = lambda: False,
    recipients: tuple = (),
) -> tuple[StoredFile, Owner, object]:
    """Store one backup: `dump(sink)` is write_backup (returns BackupWritten only after pg_dump's success);
    (what was stored, who owns it, the BackupWritten).
    The move into place, the ownership record and the sha256 companion happen only after it returned
    and the sizes and hashes agree; on every other path the temporary object is removed and this raises."""
    pipe, box = _Pipe(), {}
    encrypted = bool(recipients)  # `dump` then returns the age file's size and sha256 (rclone_store.py)

    def records() -> dict[str, bytes]:
        written = box["written"]
        owner = Owner(backup_name, written.facts.database, written.facts.system_identifier or None)
        box["owner"] = owner
        record = {
            **owner.metadata(),
            "sha256": written.sha256,
            "size": str(written.gzip_bytes),
            "server-version": written.facts.version,
            "pg-dump-version": written.pg_dump.version,
        }
        if encrypted:  # nothing read from the database's contents, in the clear (as S3's metadata)
            record.update(recipients_metadata(recipients))
        else:
            record.update(
                {
                    "sql-bytes": str(written.sql_bytes),
                    **(counts_metadata(written.table_rows) if written.table_rows is not None else {}),
                }
            )
        return {f"{name}{RECORD_SUFFIX}": json.dumps(record, indent=1).encode()}

    def put() -> None:
        try:
            box["stored"] = target.put(name, pipe.chunks(), records, cancelled=cancelled)
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
    return stored, box["owner"], written


@dataclass(frozen=True)
class RcloneBackup:
    name: str
    size: int
    time: datetime  # from the name (UTC)
    sha256: str | None  # from the companion `<name>.sha256`
    metadata: dict  # the ownership record `<name>.owner.json` (its sha256 blanked when it disagrees)
    modified: datetime | None = None  # the remote's modification time


def _modified(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text[:19]).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


# (name, size, modification time) -> (sha256, record) of a complete backup: a stored backup is never
# overwritten and its companions are written before it counts, so an answer once read stays right.
RecordCache = dict
# Companions read in parallel: a first listing of a few dozen backups takes a few rounds of rclone calls.
READERS = 4


def survey(
    target: RcloneTarget, names: BackupNames, owner: Owner, *, cache: RecordCache | None = None
) -> tuple[list[RcloneBackup], list[tuple[str, str]]]:
    """(this service's backups newest first, [(name, why not listed)]) — other files are not mentioned.
    One listing of the folder, then two small reads per backup not in `cache` (its companions)."""
    now, ours, ignored = datetime.now(timezone.utc), [], []
    entries = {e["Name"]: e for e in target.entries("")}
    named = [(e, when) for n, e in entries.items() if (when := names.time_of(n)) is not None]
    cache = cache if cache is not None else {}
    ident = lambda e: (e["Name"], int(e["Size"]), e.get("ModTime", ""))  # noqa: E731
    missing = [e for e, _ in named if ident(e) not in cache]
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="rclone-companions") as pool:
        for entry, found in zip(missing, pool.map(lambda e: companions(target, e["Name"], entries), missing)):
            if found[0]:  # complete: remembered (an unfinished one is asked again next time)
                cache[ident(entry)] = found
    for entry, when in named:
        sha256, record = cache.get(ident(entry)) or companions(target, entry["Name"], entries)
        record = {**record, "sha256": sha256 if sha256 and sha256 == record.get("sha256") else ""}
        reason = owner.refusal(record) or time_refusal(when, _modified(entry.get("ModTime", "")), now)
        backup = RcloneBackup(
            entry["Name"], int(entry["Size"]), when, sha256, record, _modified(entry.get("ModTime", ""))
        )
        (ignored.append((backup.name, reason)) if reason else ours.append(backup))
    return sorted(ours, key=lambda b: b.time, reverse=True), ignored


def companions(target: RcloneTarget, name: str, entries: dict) -> tuple[str | None, dict]:
    """(the sha256 `<name>.sha256` records, the ownership record) — None / {} where there is none;
    `entries`: the folder's listing by name."""
    sha256 = target.companion_sha256(name, listed=True) if f"{name}.sha256" in entries else None
    if f"{name}{RECORD_SUFFIX}" not in entries:
        return sha256, {}
    try:
        data = json.loads(target.read(f"{name}{RECORD_SUFFIX}"))
    except ValueError:
        return sha256, {}
    return sha256, ({str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {})


def prune(
    target: RcloneTarget,
    names: BackupNames,
    owner: Owner,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    keep: str | None = None,
) -> list[tuple[str, str]]:
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
