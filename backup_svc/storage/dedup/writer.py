"""The upload side: the dump's gzip bytes in, new chunks out to the store, the chunk list kept for the manifest.

The sink takes the same gzip bytes a download sends (dump/backup.py's write_backup, unchanged: its
completion line and exit checks decide whether a manifest is written at all), inflates them, and cuts
the SQL with FastCDC. Memory: the uncut SQL (at most CUT_WINDOW + one inflated batch) plus at most
CHUNKS_IN_FLIGHT compressed chunks being sent, whatever the database's size.
"""

from __future__ import annotations

import hashlib
import zlib
from concurrent.futures import Future

from pyfastcdc import FastCDC

from backup_svc.storage.client import StorageError
from backup_svc.storage.upload import in_daemon_thread

from .chunks import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, ChunkKey, ChunkStore, compress_chunk
from .manifest import ChunkRef

# The SQL is cut once this much has gathered. Every chunk but the buffer's last is final: a FastCDC cut
# depends only on the bytes from the chunk's start to at most MAX_CHUNK after it, so cutting in windows
# gives exactly the chunks of cutting the whole stream at once (the last one is carried into the next window).
CUT_WINDOW = 2 * MAX_CHUNK
# New chunks being compressed and sent at once: enough to keep the link busy, each costs up to MAX_CHUNK.
CHUNKS_IN_FLIGHT = 4
_GZIP_WBITS = 31
# Lines that differ in every dump of an unchanged database: pg_dump's random key (since 13.22, 14.19, 15.14,
# 16.10, 17.6: `\restrict KEY` in the header, `\unrestrict KEY` last) and, with --verbose, its start and end
# times. The header up to the last of the first two and the end from the first of the last two are chunks of
# their own, so that the chunks between them stay the same from one night to the next. The header's lines are
# looked for in the first HEADER_SPAN bytes.
_HEADER_LINES = (b"\n\\restrict ", b"\n-- Started on ")
_TRAILER_LINES = (b"\n-- Completed on ", b"\n\\unrestrict ")
HEADER_SPAN = 64 * 1024
INFLATE_STEP = 1 << 20


class DedupSink:
    """`write(gzip bytes)` like an upload; `finish()` cuts the rest and waits for every new chunk to be stored.

    `known` maps the ids already in the store (listed once at the start) to their stored sizes: those
    are not sent again. Nothing here writes a manifest; a failure leaves only chunks no manifest names
    (collected later, docs/storage.md).
    """

    def __init__(self, store: ChunkStore, key: ChunkKey, known: dict[str, int]):
        self.store = store
        self.key = key
        self._sizes: dict[str, int | Future] = dict(known)  # id -> stored size, or the send that tells it
        self._ids: list[tuple[str, int]] = []  # (id, plain size) in the SQL's order
        self.new_chunks = 0
        self.new_bytes = 0  # compressed bytes sent by this run
        self.sql_bytes = 0
        self._sql_sha256 = hashlib.sha256()
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self._cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
        self._buffer = bytearray()
        self._header_done = False  # the `\restrict` line was cut off (or there is none)
        self._pending: list[Future] = []  # sends not yet seen done, oldest first

    @property
    def sql_sha256(self) -> str:
        return self._sql_sha256.hexdigest()

    def write(self, data: bytes) -> int:
        # at most INFLATE_STEP of SQL at a time: a batch of very repetitive rows may inflate a thousandfold
        self._take(self._inflate.decompress(data, INFLATE_STEP))
        while self._inflate.unconsumed_tail:
            self._take(self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_STEP))
        return len(data)

    def _take(self, plain: bytes) -> None:
        if plain:
            self._sql_sha256.update(plain)
            self.sql_bytes += len(plain)
            self._buffer += plain
            if not self._header_done and len(self._buffer) >= HEADER_SPAN:
                self._cut_header()
            if len(self._buffer) >= CUT_WINDOW:
                self._cut(final=False)

    def finish(self) -> list[ChunkRef]:
        """The dump is complete: cut the rest, wait for every chunk on the wire; the chunks in order.
        StorageError when a chunk could not be stored."""
        self._take(self._inflate.flush())
        if not self._inflate.eof:
            raise StorageError("the dump's gzip stream ended before its trailer")
        if not self._header_done:
            self._cut_header()
        self._cut(final=True)
        for future in self._pending:
            future.result()
        sent = {i: f.result() for i, f in self._sizes.items() if isinstance(f, Future)}
        self.new_chunks, self.new_bytes = len(sent), sum(sent.values())
        self._sizes.update(sent)
        return [ChunkRef(i, size, self._sizes[i]) for i, size in self._ids]

    def abort(self) -> None:
        """A failed dump: nothing more is sent. Sends on the wire end by themselves (daemon threads, which never
        hold up the process's exit); chunks already stored stay as garbage for the next collection."""
        self._pending = []

    def _cut_header(self) -> None:
        """The dump's start up to and including its `\\restrict KEY` and `-- Started on` lines as a chunk of its own."""
        self._header_done = True
        starts = [self._buffer.find(line, 0, HEADER_SPAN) for line in _HEADER_LINES]
        end = max((self._buffer.find(b"\n", start + 1) + 1 for start in starts if start >= 0), default=0)
        if end > 0:
            self._add(bytes(self._buffer[:end]))
            del self._buffer[:end]

    def _cut(self, *, final: bool) -> None:
        # (offset, length) only: a Chunk holds a view of the buffer, which must not outlive this cut
        cut = [(chunk.offset, chunk.length) for chunk in self._cdc.cut_buf(self._buffer)]
        if not final:
            cut = cut[:-1]  # the last chunk may have been cut by the window's end, not by the content
        else:  # the dump's end from its `-- Completed on` or `\\unrestrict KEY` line as a chunk of its own
            found = [self._buffer.rfind(line) + 1 for line in _TRAILER_LINES]
            tail = min((at for at in found if at > 0), default=0)
            if tail > 0:
                cut = [(start, min(size, tail - start)) for start, size in cut if start < tail]
                cut.append((tail, len(self._buffer) - tail))
        consumed = 0
        view = memoryview(self._buffer)
        try:
            for offset, length in cut:
                self._add(view[offset : offset + length])
                consumed = offset + length
        finally:
            view.release()
        del self._buffer[:consumed]

    def _add(self, data: memoryview | bytes) -> None:
        chunk_id = self.key.chunk_id(data)
        self._ids.append((chunk_id, len(data)))
        if chunk_id in self._sizes:  # stored before, or already on its way in this run
            return
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()  # a failed send surfaces at the next chunk
        while len(self._pending) >= CHUNKS_IN_FLIGHT:
            self._pending.pop(0).result()  # re-raises a chunk's StorageError in the writer's thread
        # a thread per chunk (at most CHUNKS_IN_FLIGHT): one stuck on a dead link never keeps a stopping process alive
        # the plain copy travels in a list the send empties once it is compressed: not held during the PUT
        future = in_daemon_thread(self._send, chunk_id, [bytes(data)])
        self._pending.append(future)
        self._sizes[chunk_id] = future

    def _send(self, chunk_id: str, holder: list[bytes]) -> int:
        stored = self.store.seal(compress_chunk(holder.pop()))  # age-encrypted when the store has recipients
        self.store.put(chunk_id, stored)
        return len(stored)
