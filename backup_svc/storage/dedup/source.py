"""Opening a stored dedup backup (its manifest's key) as a stream of plain SQL, for verify, restore and drills."""

from __future__ import annotations

from typing import BinaryIO, Callable

from backup_svc.storage.location import StorageLocation

from .chunks import ChunkKey, ChunkStore
from .manifest import MAX_MANIFEST_BYTES, BadManifest, Manifest, is_manifest_name, open_manifest
from .reader import DedupStream


def chunk_store_of(client, bucket: str, manifest_key: str, manifest: Manifest, identities=()) -> ChunkStore:
    """The chunk store a manifest's chunks are in: `_chunks/<BACKUP_NAME>/` beside the manifest, its chunks
    named with the manifest's suffix (decrypted with `identities` when they are age-encrypted)."""
    prefix = manifest_key[: manifest_key.rfind("/") + 1]
    backup_name = manifest.facts.get("backup_name")
    if not isinstance(backup_name, str) or not backup_name or "/" in backup_name:
        raise BadManifest("it names no valid backup_name (the chunk store's folder)")
    return ChunkStore(
        client, StorageLocation(bucket, prefix), backup_name, suffix=manifest.chunk_suffix, identities=identities
    )


def read_manifest(stream: BinaryIO, name: str, identities=()) -> tuple[Manifest, bytes]:
    """The manifest in an opened object (read whole: it is small), and its bytes. An encrypted one is
    decrypted with `identities` (BACKUP_AGE_IDENTITY): IdentityNeeded without them."""
    data = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadManifest(f"{name} is larger than any manifest ({MAX_MANIFEST_BYTES} bytes)")
    return open_manifest(data, identities), data


def dedup_opener(
    client, bucket: str, key: str, chunk_key: ChunkKey | None, first: BinaryIO | None = None, identities=()
) -> Callable[[], BinaryIO]:
    """An opener (as files.reader.BackupReader takes) giving the backup's SQL from its chunks, checked as it
    streams. `first`: the manifest object already opened (read by the first pass). Without `chunk_key` each
    chunk's id is not checked, only that it inflates and that the whole SQL has the recorded sha256.
    `identities` (BACKUP_AGE_IDENTITY) decrypt an encrypted backup's manifest and chunks."""
    from backup_svc.storage.reader import open_object

    opened = [first] if first is not None else []

    def opener() -> BinaryIO:
        stream = opened.pop() if opened else open_object(client, bucket, key)
        try:
            manifest, data = read_manifest(stream, f"s3://{bucket}/{key}", identities)
        finally:
            stream.close()
        return DedupStream(manifest, data, chunk_store_of(client, bucket, key, manifest, identities), chunk_key)

    return opener


def stored_opener(
    client, bucket: str, key: str, first: BinaryIO, secret: str = "", identities=()
) -> Callable[[], BinaryIO]:
    """How every reader of a stored backup opens it: the object's own bytes, or — for a dedup manifest — the
    SQL from its chunks, each checked with BACKUP_DEDUP_KEY (`secret`; empty: the whole SQL's sha256 only).
    `first`: the object already opened (its metadata read), handed to the first pass. `identities`
    (BACKUP_AGE_IDENTITY) decrypt an encrypted dedup backup (a `.sql.gz.age` is decrypted by the caller's
    crypto.decrypt.decrypting_opener, as before)."""
    from backup_svc.storage.reader import open_object

    if is_manifest_name(key):
        return dedup_opener(client, bucket, key, ChunkKey(secret) if secret else None, first, identities)
    opened = [first]

    def opener() -> BinaryIO:
        return opened.pop() if opened else open_object(client, bucket, key)

    return opener


def logical_size(key: str, metadata: dict, stored_size: int) -> int:
    """The bytes a reader of the backup goes through: a dedup backup's SQL (its chunks), else the object's."""
    if is_manifest_name(key):
        try:
            return int(metadata["sql-bytes"])
        except (KeyError, ValueError):
            return stored_size
    return stored_size
