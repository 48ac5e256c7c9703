"""A dedup backup as a `.sql.gz`, rebuilt from its chunks without compressing anything again.

A stored chunk is zlib format: a 2-byte header, raw deflate, adler-32. A gzip member is a 10-byte header,
raw deflate, CRC-32 and the length mod 2**32; concatenated members are one valid `.sql.gz` (RFC 1952 2.2;
`gunzip`, Python's gzip and files/reader.py read them all). So each chunk becomes one member: its stored
deflate bytes between a fixed header (mtime 0, OS "unknown") and a trailer of the CRC-32 of its plain
bytes. The same backup always gives the same bytes (`get` and the dashboard's download are identical),
and the length is known from the manifest before the first byte: each member is its chunk's stored size
+ 12.

Each chunk is read and checked by DedupStream (it must inflate, have the manifest's size and, with the key,
its HMAC id); the last member is released only after the whole SQL's sha256 matched the manifest's, so a
damaged backup never yields a complete `.sql.gz`: the file or the transfer ends inside a member (each
member's trailer is sent only with the next checked chunk), so gzip rejects what arrived.
This is not the `.sql.gz` the upload itself streamed (that one had idle sync-flushes, so the manifest's
`sqlgz_sha256` cannot be reproduced); the SQL inside is the same, checked against `sql_sha256`.
An age-encrypted backup's chunks are decrypted first (DedupStream's store holds BACKUP_AGE_IDENTITY):
`get` can rebuild it; its length is not known in advance (sqlgz_size is None).
Memory: DedupStream's (READ_AHEAD chunks fetched ahead, each ≤ MAX_CHUNK plain and its stored bytes, and the
one being handed on). The generator closes the stream when it ends, fails or is closed early (the client went
away), which stops the read-ahead threads.
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterator

from .manifest import Manifest
from .reader import BadChunk, DedupStream

# The dashboard's download of a dedup backup (the .sql.gz rebuilt here, streamed through the service):
# bench/dedup_download.py --size 150MB, 3 rounds, median 0.74 s for 28.3 MB = 38.0 MB/s with the reader's
# read-ahead (issue 28f, 2026-12-05 18:21 UTC, load average 1.8 on the shared 2-core development machine;
# the same bench without read-ahead gave 31.7 MB/s at 18:13, load 0.7, and 20.1 MB/s earlier at load 4.3).
# moto's S3 server on LOOPBACK, not a real bucket over the internet (the page says so, beside a real rate):
# read-ahead keeps 4 chunk GETs in flight, so a real bucket's per-request latency is paid ~once per 4 chunks.
MEASURED_MB_S = 38.0
MEASURED_ON = "moto's S3 server on loopback on the development machine (bench/dedup_download.py), not a real bucket"

# ID1 ID2, CM=8 (deflate), FLG=0, MTIME=0, XFL=0, OS=255 (unknown): fixed, so the bytes never vary.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# a member = header (10) + the chunk's deflate (stored size - 2 header - 4 adler-32) + CRC-32 + ISIZE (8)
MEMBER_OVERHEAD = len(GZIP_HEADER) - 2 - 4 + 8


def sqlgz_size(manifest: Manifest) -> int | None:
    """The length of the `.sql.gz` a manifest's chunks make (sqlgz_members' bytes, all of them); None for an
    age-encrypted backup, whose manifest records the sealed chunks' sizes, not their zlib bytes'."""
    if manifest.encrypted:
        return None
    return sum(chunk.stored + MEMBER_OVERHEAD for chunk in manifest.chunks)


def sqlgz_name(manifest_name: str) -> str:
    """`…_backup_<UTC>.sql.dedup` → `…_backup_<UTC>.sql.gz` (the name a download gets)."""
    return manifest_name.removesuffix(".sql.dedup") + ".sql.gz"


def _deflate_of(packed: bytes, where: str) -> memoryview:
    """The raw deflate inside a zlib-format chunk; BadChunk if its header is not the plain one we write."""
    if len(packed) < 6 or packed[0] & 0x0F != 8 or packed[1] & 0x20 or ((packed[0] << 8) | packed[1]) % 31:
        raise BadChunk(f"{where} does not start with a zlib header this version writes")
    return memoryview(packed)[2:-4]


def sqlgz_members(stream: DedupStream) -> Iterator[bytes]:
    """The `.sql.gz` of the backup `stream` reads, about one gzip member (one chunk) at a time; BadChunk naming
    the chunk when one is damaged or missing, or — before the last member — when the whole SQL is not the
    manifest's.

    Each member's 8-byte trailer is held back and sent with the next member, once that chunk has been
    checked: bytes cut short by a failure never end on a member boundary, so the partial file is not a
    valid gzip file of part of the SQL (`gzip -t` rejects it, as it rejects a broken download)."""
    chunks = stream.manifest.chunks
    trailer = b""
    try:
        while True:
            index, plain = stream.next_chunk()
            if index < 0:
                if trailer:
                    yield trailer
                return
            ref, packed = chunks[index], stream.last_packed
            where = f"chunk {index + 1} of {len(chunks)} ({ref.id})"
            if not stream.manifest.encrypted and len(packed) != ref.stored:  # the length promised up front
                raise BadChunk(f"{where} is {len(packed)} bytes stored, the manifest says {ref.stored}")
            yield b"".join((trailer, GZIP_HEADER, _deflate_of(packed, where)))
            trailer = struct.pack("<II", zlib.crc32(plain), len(plain) & 0xFFFFFFFF)
    finally:  # the end, a failure, or the client went away (GeneratorExit): no read-ahead thread stays
        stream.close()
