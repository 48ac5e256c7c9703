"""Where a restore's bytes come from (a file, or a stored object read as a stream), and the check
pass over them: intact and complete, the sha256 recorded with the object, every table's rows."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from backup_svc.crypto.decrypt import decrypting_opener
from backup_svc.crypto.keys import Identity
from backup_svc.dump.rowcount import RowCounts, count_rows, counts_from_metadata
from backup_svc.files.reader import BackupReader, BadBackup
from backup_svc.files.scan import DumpScanner

from .progress import RestoreProgress

Opener = Callable[[], BinaryIO]


@dataclass(frozen=True)
class Source:
    """A backup to restore: `label` (a path or s3:// URL), how to open it, what was recorded with it."""

    label: str
    name: str  # the backup's file name, for messages and the audit trail
    opener: Opener | None = None  # None: the file at `label`
    size: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # the stored object's user metadata
    stored_sha256: str | None = None  # from the metadata or the `<key>.sha256` companion object
    # BACKUP_AGE_IDENTITY: what an age-encrypted backup is decrypted with (none: such a backup is refused)
    identities: tuple[Identity, ...] = field(default=(), repr=False)

    def reading_opener(self, wrap: Callable[[BinaryIO], BinaryIO] | None = None) -> Opener:
        """Opens the backup for one pass, decrypting it as it streams when it is age-encrypted (the one
        decrypting stream of crypto/decrypt.py); `wrap` sees the raw (stored) bytes. IdentityNeeded on
        opening an age file without identities."""

        def raw() -> BinaryIO:
            opened = self.opener() if self.opener is not None else open(self.label, "rb")
            return wrap(opened) if wrap is not None else opened

        return decrypting_opener(self.label, raw, self.identities)


def stored_source(
    client, bucket: str, key: str, name: str, identities: tuple[Identity, ...] = (), dedup_secret: str = ""
) -> Source:
    """A stored object as a Source: opened once now (fails early: no such key, no access), re-opened per pass.
    A dedup manifest's Source streams the SQL from its chunks (checked with BACKUP_DEDUP_KEY, `dedup_secret`)."""
    from backup_svc.storage.dedup.source import logical_size, stored_opener
    from backup_svc.storage.reader import open_object

    first = open_object(client, bucket, key)
    sha256 = first.metadata.get("sha256") or _companion_sha256(client, bucket, key)
    return Source(
        label=f"s3://{bucket}/{key}",
        name=name,
        opener=stored_opener(client, bucket, key, first, dedup_secret, identities),
        size=logical_size(key, first.metadata, first.size),
        metadata=dict(first.metadata),
        stored_sha256=sha256,
        identities=tuple(identities),
    )


def remote_source(target, name: str, identities: tuple[Identity, ...] = ()) -> Source:
    """A backup on an rclone remote (`target`: an RcloneTarget on its folder) as a Source: `rclone cat` per pass
    (no temp file), the sha256 of its `.sha256` companion, the row counts of its ownership record. StorageError
    when it is not there or the remote cannot be listed."""
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.rclone_reader import IterStream
    from backup_svc.storage.rclone_run import companions

    label = f"rclone:{target.location.target(name)}"
    listed = {e["Name"]: e for e in target.entries("")}
    if name not in listed:
        raise StorageError(f"{label} does not exist (any more)")
    sha256, record = companions(target, name, listed)
    return Source(
        label=label,
        name=name,
        opener=lambda: IterStream(label, target.open(name)),
        size=int(listed[name]["Size"]),
        metadata=record,
        stored_sha256=sha256,
        identities=tuple(identities),
    )


def _companion_sha256(client, bucket: str, key: str) -> str | None:
    """The sha256 in `<key>.sha256` (sha256sum format), for an object recorded without copying it."""
    try:
        body = client.get_object(Bucket=bucket, Key=f"{key}.sha256")["Body"].read(4096)
    except Exception:
        return None
    first = body.decode("ascii", "replace").split()
    return first[0].lower() if first and len(first[0]) == 64 else None


class _Watched(io.RawIOBase):
    """The raw bytes of a pass, counted into the progress; a cancel stops the read."""

    def __init__(self, raw: BinaryIO, progress: RestoreProgress):
        super().__init__()
        self.raw, self.progress = raw, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.progress.check_cancel()
        n = self.raw.readinto(buffer)
        self.progress.checked_bytes += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


@dataclass(frozen=True)
class Checked:
    """What the check pass found: the dump's versions and encoding, and the rows to expect."""

    pg_dump_version: str
    encoding: str
    sql_bytes: int
    expected: RowCounts
    counts_from: str
    recorded_rows: int | None
    recorded_tables: int | None


def check_source(source: Source, progress: RestoreProgress, *, require_sha256: bool) -> Checked:
    """Read the whole backup once: intact, complete, its sha256 as recorded; BadBackup says why not."""
    progress.object_size = source.size
    opener = source.reading_opener(lambda raw: _Watched(raw, progress))  # an age file: decrypted as it streams
    reader, scanner = BackupReader(source.label, opener), DumpScanner()

    def chunks():
        for chunk in reader:
            scanner.feed(chunk)
            yield chunk

    counted = count_rows(chunks())
    problem = scanner.problem()
    if problem:
        raise BadBackup(problem)
    if source.stored_sha256 is None and require_sha256:
        raise BadBackup(
            "no sha256 is recorded with it (neither in its metadata nor a .sha256 object), so its "
            "bytes cannot be checked; restore it from a shell with `restore s3://… --target-url …`"
        )
    if source.stored_sha256 is not None and source.stored_sha256 != reader.sha256:
        raise BadBackup(
            f"its bytes have sha256 {reader.sha256}, but the sha256 stored with it is "
            f"{source.stored_sha256}: the object changed after it was stored"
        )
    recorded, rows, tables = counts_from_metadata(source.metadata)
    return Checked(
        pg_dump_version=scanner.pg_dump_version or "",
        encoding=scanner.encoding or "",
        sql_bytes=scanner.sql_bytes,
        expected=recorded if recorded is not None else counted,
        counts_from="dump-time metadata" if recorded is not None else "the backup's own COPY data",
        recorded_rows=rows,
        recorded_tables=tables,
    )
