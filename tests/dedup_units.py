"""Stand-ins for the dedup chunk store in unit tests (a dict; a slow dict) and the SQL-like text and the
store-a-dump step those tests share. The service tests use moto's S3 server instead."""

from __future__ import annotations

import gzip
import random
import time

from backup_svc.storage.dedup.chunks import ChunkKey
from backup_svc.storage.dedup.manifest import Manifest
from backup_svc.storage.dedup.writer import DedupSink


KEY = ChunkKey("unit-test-dedup-key-" + "k" * 20)


class DictStore:
    """Stands in for ChunkStore: put/get by id."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put(self, chunk_id: str, stored: bytes) -> None:
        self.puts += 1
        self.objects[chunk_id] = stored

    def get(self, chunk_id: str) -> bytes:
        return self.objects[chunk_id]

    def seal(self, compressed: bytes) -> bytes:  # chunks in the clear (ChunkStore without recipients)
        return compressed

    def unseal(self, stored: bytes) -> bytes:
        return stored


def sql_like(size: int, seed: int = 1) -> bytes:
    """Text that compresses like SQL but has content-defined cut points (random words)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(2, 9)).hex().encode() for _ in range(5000)]  # seeded: the same cuts every run
    out = bytearray()
    while len(out) < size:
        out += b"\t".join(rng.choice(words) for _ in range(8)) + b"\n"
    return bytes(out[:size])


def store(sql: bytes, backing: DictStore, known: dict[str, int] | None = None, batch: int = 256 * 1024):
    sink = DedupSink(backing, KEY, known or {})
    gz = gzip.compress(sql, 1)
    for start in range(0, len(gz), batch):
        sink.write(gz[start : start + batch])
    chunks = sink.finish()
    return sink, Manifest(
        backup="x",
        chunks=chunks,
        sql_sha256=sink.sql_sha256,
        sql_bytes=sink.sql_bytes,
        key_check=KEY.check,
        facts={"backup_name": "x"},
    )


class SlowStore(DictStore):
    """A DictStore whose get() takes `delay` seconds, as a bucket's request latency would (a fake store: the
    overlap of fetches is what is measured, and a loopback moto server answers too fast to show it). It
    records how many gets ran at once, and can be made to fail one chunk."""

    def __init__(self, delay: float):
        super().__init__()
        import threading

        self.delay, self.lock = delay, threading.Lock()
        self.running = self.most = self.gets = 0

    def get(self, chunk_id: str) -> bytes:
        with self.lock:
            self.running += 1
            self.gets += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            if chunk_id not in self.objects:
                from backup_svc.storage.dedup.chunks import MissingChunk

                raise MissingChunk(f"chunk {chunk_id} is missing")
            return super().get(chunk_id)
        finally:
            with self.lock:
                self.running -= 1


def read_ahead_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("dedup-read-ahead")]
