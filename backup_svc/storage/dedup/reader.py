"""The read side: a manifest's chunks streamed back in order as plain SQL, each one checked.

Every chunk must inflate (zlib's adler-32) and, with the key, hash to its id (HMAC-SHA256); the whole
SQL must hash to the manifest's sha256 and size. The last chunk is handed on only after that final
check: a reader of this stream (psql in one transaction) never sees the end of a backup that is wrong.
An encrypted backup's chunks are age-decrypted first (the store's identities, BACKUP_AGE_IDENTITY), and age
authenticates them.

Read-ahead: the next READ_AHEAD chunks are fetched (GET, age-decrypt, inflate) by a small thread pool while the
caller consumes the current one, so a bucket's per-request latency is not paid once per chunk in a row. The
checks (size, HMAC id, the whole SQL's sha256) still run here, in order, as each chunk is handed on; a failed
fetch is raised only when its turn comes, naming its chunk. Memory: at most READ_AHEAD fetched chunks (each
≤ MAX_CHUNK plain plus its stored bytes) and the one being handed on, and the manifest. The pool starts on
the first read and is shut down (queued fetches cancelled, running ones waited for) at the end, on the first
failure and by close(): no thread outlives the stream.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from backup_svc.crypto.common import DecryptionFailed
from backup_svc.files.reader import BadBackup
from backup_svc.storage.client import StorageError

from .chunks import ChunkKey, ChunkStore, decompress_chunk
from .manifest import Manifest


# Chunks fetched ahead, the one waited for included (4 GETs in flight hide most of a bucket's latency; each
# holds at most MAX_CHUNK plain bytes plus its stored bytes).
READ_AHEAD = 4


class BadChunk(BadBackup):
    """A chunk, or the SQL they make together, is not what the manifest says; the message names it."""


class DedupStream(io.RawIOBase):
    """The plain SQL of one dedup backup, read from its chunks. `stored_size`/`stored_sha256` describe the
    manifest object (what `list` shows and its metadata records); `key` None checks all but the chunk ids."""

    plain_sql = True  # files/reader.py: the bytes are SQL already, nothing to inflate

    def __init__(self, manifest: Manifest, manifest_bytes: bytes, store: ChunkStore, key: ChunkKey | None):
        super().__init__()
        if key is not None and manifest.key_check and not hmac.compare_digest(key.check, manifest.key_check):
            raise BadChunk("BACKUP_DEDUP_KEY is not the key this backup's chunks were stored with")
        self.manifest = manifest
        self.store = store
        self.key = key
        self.stored_size = len(manifest_bytes)
        self.stored_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        self._next = 0
        self._held = memoryview(b"")  # what is left of the chunk being handed on
        self._sql_sha256 = hashlib.sha256()
        self._sql_bytes = 0
        self.last_packed = b""
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: deque[Future] = deque()  # fetches of chunks _next, _next + 1, … in order

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._held:
            self._held = memoryview(self._fetch_next())
            if not self._held:
                return 0
        n = min(len(buffer), len(self._held))
        buffer[:n] = self._held[:n]
        self._held = self._held[n:]
        return n

    def next_chunk(self) -> tuple[int, bytes]:
        """(index, plain bytes) of the next chunk, checked as for reading (the last one only after the whole
        SQL's check), with its zlib bytes (decrypted, for an encrypted backup) in `last_packed`; (-1, b"") at the end."""
        index = self._next
        plain = self._fetch_next()
        return (index, plain) if self._next > index else (-1, b"")

    def close(self) -> None:
        self._stop()
        super().close()

    def _stop(self) -> None:
        """Cancel the queued fetches and wait for the running ones: no thread or future outlives this."""
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _load(self, chunk_id: str) -> tuple[bytes, bytes]:
        """(stored bytes as zlib, plain bytes) of one chunk: runs in the read-ahead pool."""
        packed = self.store.unseal(self.store.get(chunk_id))  # the zlib bytes (age-decrypted when sealed)
        return packed, decompress_chunk(packed)

    def _fetch_next(self) -> bytes:
        try:
            return self._check_next()
        except BaseException:
            self._stop()
            raise

    def _check_next(self) -> bytes:
        chunks = self.manifest.chunks
        if self._next >= len(chunks):
            return b""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="dedup-read-ahead")
        queued = self._next + len(self._ahead)
        for index in range(queued, min(self._next + READ_AHEAD, len(chunks))):
            self._ahead.append(self._pool.submit(self._load, chunks[index].id))
        ref = chunks[self._next]
        where = f"chunk {self._next + 1} of {len(chunks)} ({ref.id})"
        try:
            packed, plain = self._ahead.popleft().result()
        except DecryptionFailed as exc:  # IdentityNeeded / WrongIdentity stay the cause (drills tell them apart)
            raise BadChunk(f"{where} cannot be decrypted: {exc}") from exc
        except zlib.error as exc:
            raise BadChunk(f"{where} is damaged: it does not inflate ({exc})") from None
        except StorageError as exc:
            raise BadChunk(f"{where} cannot be read: {exc}") from None
        if len(plain) != ref.size:
            raise BadChunk(f"{where} holds {len(plain)} bytes, the manifest says {ref.size}")
        if self.key is not None and not hmac.compare_digest(self.key.chunk_id(plain), ref.id):
            raise BadChunk(f"{where} is not the chunk its id names (its HMAC differs): it was changed in the bucket")
        self._sql_sha256.update(plain)
        self._sql_bytes += len(plain)
        self._next += 1
        self.last_packed = packed  # sqlgz.py reuses its deflate bytes (checked above) for a .sql.gz member
        if self._next == len(chunks):  # before the last bytes leave: the whole SQL must be the recorded one
            sha256 = self._sql_sha256.hexdigest()
            if self._sql_bytes != self.manifest.sql_bytes or sha256 != self.manifest.sql_sha256:
                raise BadChunk(
                    f"the reassembled SQL has sha256 {sha256} ({self._sql_bytes} bytes), the manifest "
                    f"records {self.manifest.sql_sha256} ({self.manifest.sql_bytes} bytes)"
                )
            self._stop()  # every chunk is fetched: the pool's threads end now
        return plain
