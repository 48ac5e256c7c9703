"""The chunk store: each chunk of plain SQL compressed once under `<prefix>_chunks/<BACKUP_NAME>/<id>`,
its id the HMAC-SHA256 of its plain bytes under the service's BACKUP_DEDUP_KEY.

The key decrypts nothing. It stops whoever can list the bucket from testing whether a guessed piece of
SQL is stored (a plain hash would let them), and it lets a reader prove each chunk is the one the
manifest names.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib

from backup_svc.storage.client import RetryPolicy, StorageError, error_code, with_retries
from backup_svc.storage.location import StorageLocation

try:  # ISA-L compresses ~2x faster than zlib; the zlib container it writes is the standard one
    from isal import isal_zlib as _compressor
except ImportError:  # pragma: no cover - the standard library keeps working without it
    _compressor = zlib

# Chunk sizes (pyfastcdc's FastCDC 2020): 1 MiB on average, 256 KiB to 4 MiB. Issue 28 measured 13.5 % new
# bytes per realistic night at 1 MiB against 12.3 % at 64 KiB; 1 MiB needs 16x fewer objects and requests.
# Issue 28f tried 256 KiB on the 7-night 300 MB bench: every night <= 16.8 % of a full backup (1 MiB: up to
# 20.7 %), but the upload took 1.5-2.3x the .sql.gz upload's time against 1.2-1.6x (bench/README.md): kept.
# A manifest records each chunk's size, so a backup cut at another size reads back unchanged.
AVG_CHUNK = 1 << 20
MIN_CHUNK = AVG_CHUNK // 4
MAX_CHUNK = AVG_CHUNK * 4
# ISA-L's level 1 (DEFAULT_LEVEL of the .sql.gz format): the compression a download gets.
CHUNK_LEVEL = 1
# The folder of the chunk store, beside `_history/`: never a backup name, skipped by the backups' listing.
CHUNK_FOLDER = "_chunks"
# What the manifest records so that a reader with the wrong key is told so, not that every chunk is corrupt.
_KEY_CHECK_LABEL = b"backup_svc dedup key check v1"


class ChunkKey:
    """BACKUP_DEDUP_KEY as the HMAC that names chunks; never printed (repr hides it)."""

    def __init__(self, secret: str):
        self._key = secret.encode()

    def __repr__(self) -> str:
        return "ChunkKey(<hidden>)"

    def chunk_id(self, data) -> str:
        """The chunk's id: hex HMAC-SHA256 of its plain bytes."""
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    @property
    def check(self) -> str:
        """A fingerprint of the key (an HMAC of a fixed label): tells a wrong key from corrupt chunks."""
        return hmac.new(self._key, _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


def compress_chunk(data) -> bytes:
    """The stored form of a chunk: zlib format (adler-32 checked on reading)."""
    return _compressor.compress(data, CHUNK_LEVEL)


def decompress_chunk(stored: bytes) -> bytes:
    """A stored chunk's plain bytes; zlib.error when it is damaged."""
    return zlib.decompress(stored)


def encrypted_suffix(recipients) -> str:
    """The object-name suffix of chunks age-encrypted to exactly these recipients: `.<16 hex>.age`.

    A chunk is reused only by backups encrypted to the same recipients: a chunk stored in the clear, or
    encrypted to keys since rotated away, is never named by a new encrypted backup (changing
    BACKUP_AGE_RECIPIENTS costs one full upload, docs/storage.md)."""
    texts = sorted({r.text for r in recipients})
    if not texts:
        raise ValueError("no recipients")
    return "." + hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16] + ".age"


class ChunkStore:
    """The chunks of one backup name under one prefix, as objects `<id><suffix>`: suffix "" for chunks in the
    clear, `encrypted_suffix(recipients)` for age-encrypted ones. `recipients` seal what is put (the upload),
    `identities` (BACKUP_AGE_IDENTITY) open what is got (readers)."""

    def __init__(
        self,
        client,
        location: StorageLocation,
        backup_name: str,
        retry: RetryPolicy = RetryPolicy(),
        *,
        suffix: str = "",
        recipients=(),
        identities=(),
    ):
        self.client = client
        self.bucket = location.bucket
        self.folder = f"{location.prefix}{CHUNK_FOLDER}/{backup_name}/"
        self.retry = retry
        self.suffix = suffix
        self.recipients = tuple(recipients)
        self.identities = tuple(identities)
        if self.recipients and suffix != encrypted_suffix(self.recipients):
            raise ValueError("chunks encrypted to these recipients are named with their encrypted_suffix")

    def key(self, chunk_id: str) -> str:
        return self.folder + chunk_id + self.suffix

    def seal(self, compressed: bytes) -> bytes:
        """A compressed chunk's stored bytes: age-encrypted to the recipients when the store has them."""
        if not self.recipients:
            return compressed
        from backup_svc.crypto.encrypt import encrypt_bytes

        return encrypt_bytes(compressed, self.recipients)

    def unseal(self, stored: bytes) -> bytes:
        """A stored chunk's compressed bytes: decrypted with the identities when its name says it is encrypted
        (IdentityNeeded / WrongIdentity / DecryptionFailed from crypto/ when that cannot be done)."""
        if not self.suffix:
            return stored
        from backup_svc.crypto.decrypt import decrypt_bytes

        return decrypt_bytes(stored, self.identities)

    def listing(self) -> dict[str, dict]:
        """{id: {"size", "modified"}} of every chunk stored under this store's suffix (chunks in the clear
        and chunks encrypted to other recipients are not this store's); StorageError when it cannot be listed."""
        found: dict[str, dict] = {}
        for name, info in self.objects().items():
            chunk_id = name[: len(name) - len(self.suffix)] if name.endswith(self.suffix) else ""
            if chunk_id and "." not in chunk_id:
                found[chunk_id] = info
        return found

    def objects(self) -> dict[str, dict]:
        """{object name under the folder: {"size", "modified"}} of every object in the chunk folder."""
        found: dict[str, dict] = {}
        request = {"Bucket": self.bucket, "Prefix": self.folder, "MaxKeys": 1000}
        while True:
            page = with_retries(
                f"listing s3://{self.bucket}/{self.folder}", lambda: self.client.list_objects_v2(**request), self.retry
            )
            for item in page.get("Contents", []):
                found[item["Key"][len(self.folder) :]] = {"size": item["Size"], "modified": item["LastModified"]}
            if not page.get("IsTruncated"):
                return found
            request["ContinuationToken"] = page["NextContinuationToken"]

    def put(self, chunk_id: str, stored: bytes) -> None:
        """Store one compressed chunk (same id, same bytes: a repeated put changes nothing)."""
        key = self.key(chunk_id)
        with_retries(
            f"storing chunk {chunk_id}",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=stored, ContentType="application/octet-stream"
            ),
            self.retry,
        )

    def get(self, chunk_id: str) -> bytes:
        """One chunk's stored bytes; StorageError naming the chunk when it is missing or unreadable."""
        key = self.key(chunk_id)

        def read() -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except Exception as exc:
                if error_code(exc)[1] == 404:
                    raise MissingChunk(f"chunk {chunk_id} is missing from s3://{self.bucket}/{self.folder}") from None
                raise

        return with_retries(f"reading chunk {chunk_id}", read, self.retry)

    def delete(self, chunk_id: str) -> None:
        self.delete_object(chunk_id + self.suffix)

    def delete_object(self, name: str) -> None:
        """Delete the object `name` (as `objects()` names it) from the chunk folder."""
        key = self.folder + name
        with_retries(
            f"deleting chunk {name}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key), self.retry
        )


class MissingChunk(StorageError):
    """A chunk a manifest names is not in the store."""
