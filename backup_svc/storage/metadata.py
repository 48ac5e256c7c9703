"""The end of an upload: checking what storage assembled, and reading size and sha256 back (the sha256
is recorded beside the object, companion.py)."""

from __future__ import annotations

import base64
import hashlib
import re

from isal.isal_zlib import crc32

from .client import RetryPolicy, StorageError, with_retries
from .companion import with_companion

CONTENT_TYPE = "application/gzip"
# The checksum a multipart upload asks the storage to keep for each part (`x-amz-checksum-crc32`): ISA-L's
# CRC32 costs ~6 ms per 57 MB where the MD5 of Content-MD5 costs ~120 ms (bench/README.md, round 8).
CHECKSUM_ALGORITHM = "CRC32"


def crc32_checksum(data) -> str:
    """A part's `x-amz-checksum-crc32`: its CRC32, big-endian, in base64."""
    return base64.b64encode(crc32(data).to_bytes(4, "big")).decode()


def read_back(client, bucket: str, key: str, size: int, sha256: str, *, retry: RetryPolicy) -> dict[str, str]:
    """HEAD the object; its metadata (with its companion's) when its size and recorded sha256 are what was
    sent, else StorageError."""
    head = with_retries(f"reading back {key}", lambda: client.head_object(Bucket=bucket, Key=key), retry)
    stored_size = head.get("ContentLength")
    metadata = with_companion(
        client, bucket, key, head.get("Metadata", {}), etag=head.get("ETag"), size=stored_size, retry=retry
    )
    stored_sha = metadata.get("sha256")
    if stored_size != size or stored_sha != sha256:
        raise StorageError(
            f"read-back of {key} does not match what was sent: storage has "
            f"{stored_size} bytes with sha256 {stored_sha}, sent {size} bytes "
            f"with sha256 {sha256}"
        )
    return metadata


_MULTIPART_ETAG = re.compile(r'^"?([0-9a-f]{32})-(\d+)"?$')


def assembled_as_sent(etag: str | None, part_md5s: list[bytes]) -> bool:
    """Whether the completed object's ETag is the one the parts sent make: MD5(MD5(part 1) … MD5(part N))-N,
    as S3, R2, moto and most others compute it — the storage's own account of the bytes it assembled.

    Not every provider computes it so (MinIO with encryption, Riak CS…): False means "not confirmed",
    and the caller then reads the object back in full (`read_back_bytes`) rather than failing.
    """
    match = _MULTIPART_ETAG.match(etag or "")
    return (
        match is not None
        and int(match.group(2)) == len(part_md5s)
        and match.group(1) == hashlib.md5(b"".join(part_md5s)).hexdigest()
    )


def assembled_as_checksummed(checksum: str | None, part_checksums: list[str]) -> bool:
    """Whether the completed object's CRC32 is the one the parts sent make: S3's composite checksum, the CRC32
    of the parts' CRC32s (big-endian, concatenated) in base64, with "-N" for N parts (moto leaves the "-N" off
    a HEAD's). The storage computes it from the parts it holds; False (absent or another value) means "not
    confirmed", and the caller reads the object back in full."""
    if not checksum or not part_checksums:
        return False
    value, _, count = checksum.partition("-")
    try:
        raw = b"".join(base64.b64decode(c, validate=True) for c in part_checksums)
    except ValueError:
        return False
    return value == crc32_checksum(raw) and count in ("", str(len(part_checksums)))


def read_back_bytes(client, bucket: str, key: str, size: int, sha256: str, *, retry: RetryPolicy) -> None:
    """Read the whole object and compare its sha256 with what was sent; StorageError when it differs."""
    from .reader import open_object

    digest, total = hashlib.sha256(), 0
    with open_object(client, bucket, key, retry) as stream:
        while True:
            chunk = stream.read(1024 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
    if total != size or digest.hexdigest() != sha256:
        raise StorageError(
            f"read-back of {key} in full does not match what was sent: storage has {total} bytes "
            f"with sha256 {digest.hexdigest()}, sent {size} bytes with sha256 {sha256}"
        )
