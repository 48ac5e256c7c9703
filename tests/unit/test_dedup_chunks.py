"""The dedup writer and reader on their own: chunk boundaries, ids, the manifest's checks. The chunk store is a
dict here (the service tests use moto's S3 server): these tests are about bytes, not storage."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import time
import zlib

import pytest
from pyfastcdc import FastCDC

from backup_svc.storage.dedup.chunks import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, ChunkKey, compress_chunk
from backup_svc.storage.dedup.manifest import BadManifest, Manifest
from backup_svc.storage.dedup.reader import BadChunk, DedupStream
from backup_svc.storage.dedup.writer import CUT_WINDOW, DedupSink
from tests.dedup_units import KEY, DictStore, SlowStore, read_ahead_threads, sql_like, store


def test_cutting_in_windows_gives_the_chunks_of_cutting_all_at_once():
    sql = sql_like(3 * CUT_WINDOW + 12345)
    _, manifest = store(sql, DictStore())
    whole = [c.length for c in FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK).cut_buf(sql)]
    assert [c.size for c in manifest.chunks] == whole
    assert manifest.sql_sha256 == hashlib.sha256(sql).hexdigest() and manifest.sql_bytes == len(sql)


def test_known_chunks_are_not_sent_and_an_edit_sends_few():
    sql = sql_like(20 * AVG_CHUNK)
    backing = DictStore()
    store(sql, backing)
    first_puts = backing.puts
    known = {i: len(b) for i, b in backing.objects.items()}
    sink, _ = store(sql, backing, known)
    assert sink.new_chunks == 0 and backing.puts == first_puts
    edited = sql[: 10 * AVG_CHUNK] + b"an edit in the middle\n" + sql[10 * AVG_CHUNK :]
    sink, manifest = store(edited, backing, {i: len(b) for i, b in backing.objects.items()})
    assert 1 <= sink.new_chunks <= 2 < len(manifest.chunks)


def test_a_chunk_repeated_within_one_dump_is_sent_once():
    backing = DictStore()
    sink, manifest = store(b"\0" * (4 * MAX_CHUNK), backing)  # no cut point in zeros: four MAX_CHUNK chunks
    assert len(manifest.chunks) == 4 and len({c.id for c in manifest.chunks}) == 1 and backing.puts == 1
    assert all(c.stored == len(backing.objects[c.id]) for c in manifest.chunks)


def read_all(manifest: Manifest, backing: DictStore, key: ChunkKey | None = KEY) -> bytes:
    stream = DedupStream(manifest, manifest.to_bytes(), backing, key)
    out = bytearray()
    while chunk := stream.read(100_000):
        out += chunk
    return bytes(out)


def test_the_reader_gives_back_the_sql_and_checks_each_chunk_and_the_whole():
    sql = sql_like(5 * AVG_CHUNK)
    backing = DictStore()
    _, manifest = store(sql, backing)
    assert read_all(Manifest.from_bytes(manifest.to_bytes()), backing) == sql

    victim = manifest.chunks[2].id
    plain = bytearray(zlib.decompress(backing.objects[victim]))
    plain[10] ^= 1
    backing.objects[victim] = compress_chunk(bytes(plain))
    with pytest.raises(BadChunk, match=f"chunk 3 of {len(manifest.chunks)} \\({victim}\\) is not the chunk"):
        read_all(manifest, backing)
    with pytest.raises(BadChunk, match="the reassembled SQL has sha256"):  # without the key: the whole SQL's check
        read_all(manifest, backing, key=None)
    with pytest.raises(BadChunk, match="BACKUP_DEDUP_KEY is not the key"):
        read_all(manifest, backing, key=ChunkKey("another-key-" + "x" * 20))


def test_the_last_chunk_is_withheld_until_the_whole_sql_is_checked():
    sql = sql_like(3 * AVG_CHUNK)
    backing = DictStore()
    _, manifest = store(sql, backing)
    manifest.sql_sha256 = "0" * 64  # every chunk is right, the whole is not what was recorded
    stream = DedupStream(manifest, manifest.to_bytes(), backing, KEY)
    received = bytearray()
    with pytest.raises(BadChunk):
        while chunk := stream.read(65536):
            received += chunk
    assert len(received) == sum(c.size for c in manifest.chunks[:-1])


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json", "not JSON"),
        (b'{"format": "something else"}', "not a backup_svc dedup manifest"),
        (b'{"format": "backup_svc dedup manifest", "version": 9}', "version 9"),
        (
            b'{"format": "backup_svc dedup manifest", "version": 1, "backup": "x", "sql_sha256": "", "sql_bytes": 5, '
            b'"key_check": "", "chunks": [["a", 4, 3]]}',
            "do not add up",
        ),
    ],
)
def test_a_bad_manifest_says_why(data, reason):
    with pytest.raises(BadManifest, match=reason):
        Manifest.from_bytes(data)


def test_the_key_never_shows():
    assert "unit-test-dedup-key" not in repr(KEY) + KEY.check


def dump_like(body: bytes, key: str) -> bytes:
    """A plain dump's frame around `body`, with pg_dump's random `\\restrict` key in its header and last line."""
    return (
        b"--\n-- PostgreSQL database dump\n--\n\n\\restrict " + key.encode() + b"\n\n-- Dumped from database "
        b"version 17.6\n\n"
        + body
        + b"\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict "
        + key.encode()
        + b"\n\n"
    )


def test_the_random_restrict_key_costs_two_tiny_chunks_a_night():
    body = sql_like(6 * AVG_CHUNK)
    backing = DictStore()
    _, first = store(dump_like(body, "A" * 63), backing)
    sink, second = store(dump_like(body, "B" * 63), backing, {i: len(b) for i, b in backing.objects.items()})
    assert sink.new_chunks == 2 and sink.new_bytes < 200
    assert [c.id for c in first.chunks[1:-1]] == [c.id for c in second.chunks[1:-1]]
    assert read_all(second, backing) == dump_like(body, "B" * 63)


def test_a_dump_without_restrict_lines_is_cut_by_content_alone():
    sql = b"--\n-- PostgreSQL database dump\n--\n" + sql_like(3 * AVG_CHUNK)
    _, manifest = store(sql, DictStore())
    whole = [c.length for c in FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK).cut_buf(sql)]
    assert [c.size for c in manifest.chunks] == whole


def test_memory_stays_bounded_however_far_a_batch_inflates():
    """A 256 KiB batch of gzip can hold hundreds of MB of repetitive SQL: the SQL waiting to be cut stays
    under CUT_WINDOW plus one inflate step."""
    from backup_svc.storage.dedup.writer import INFLATE_STEP

    sql = b"INSERT INTO t VALUES (1, 'same');\n" * (3 * 1024 * 1024)  # ~100 MB, ~100 KB as gzip
    backing = DictStore()
    sink = DedupSink(backing, KEY, {})
    largest = 0
    original = sink._take

    def watched(plain: bytes) -> None:
        nonlocal largest
        largest = max(largest, len(sink._buffer) + len(plain))  # what is held before it is cut
        original(plain)

    sink._take = watched
    sink.write(gzip.compress(sql, 9))
    chunks = sink.finish()
    assert largest < CUT_WINDOW + INFLATE_STEP
    assert sum(c.size for c in chunks) == len(sql) and sink.sql_sha256 == hashlib.sha256(sql).hexdigest()


def test_a_chunk_being_sent_holds_its_stored_bytes_not_also_its_plain_copy():
    """With CHUNKS_IN_FLIGHT sends stuck on the link, what the sink holds is the cut window, the inflate step
    in hand and each send's stored (compressed) bytes — the plain copy of each chunk was let go once it was
    compressed (issue 28d: up to 4 × 4 MiB less at the peak). Traced by tracemalloc while the puts wait."""
    import threading
    import tracemalloc

    from backup_svc.storage.dedup.writer import CHUNKS_IN_FLIGHT, INFLATE_STEP

    gz = gzip.compress(os.urandom(12 * 1024 * 1024), 1)  # incompressible: stored ≈ plain, so a held copy shows
    release, held = threading.Event(), []

    class StuckLink(DictStore):
        def put(self, chunk_id: str, stored: bytes) -> None:
            held.append(len(stored))
            release.wait(30)
            super().put(chunk_id, stored)

    sink = DedupSink(StuckLink(), KEY, {})
    tracemalloc.start()
    try:
        writer = threading.Thread(target=lambda: [sink.write(gz[i : i + 65536]) for i in range(0, len(gz), 65536)])
        writer.start()
        deadline = time.monotonic() + 30
        while len(held) < CHUNKS_IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the writer is now waiting for the oldest send
        traced, _ = tracemalloc.get_traced_memory()
        window = sys.getsizeof(sink._buffer)
    finally:
        release.set()
        writer.join()
        tracemalloc.stop()
    sink.finish()
    assert len(held) >= CHUNKS_IN_FLIGHT
    assert traced < window + INFLATE_STEP + sum(held[:CHUNKS_IN_FLIGHT]) + 512 * 1024, (
        traced,
        window,
        held[:CHUNKS_IN_FLIGHT],
    )


def test_the_reader_fetches_the_next_chunks_while_one_is_handed_on():
    from backup_svc.storage.dedup.reader import READ_AHEAD

    sql = sql_like(12 * AVG_CHUNK)
    backing = SlowStore(0.2)
    _, manifest = store(sql, backing)
    before = read_ahead_threads()
    assert len(manifest.chunks) >= 2 * READ_AHEAD
    started = time.monotonic()
    assert read_all(manifest, backing) == sql
    took = time.monotonic() - started
    assert backing.most == READ_AHEAD  # never more in flight than stated, and that many at once
    serial = 0.2 * len(manifest.chunks)  # one get after another: at least this long
    assert took < 0.6 * serial, f"{took:.2f} s for {len(manifest.chunks)} chunks"
    assert read_ahead_threads() == before  # the end of the stream ended the pool


def test_closing_the_reader_early_leaves_no_thread_and_fetches_no_more():
    sql = sql_like(12 * AVG_CHUNK)
    backing = SlowStore(0.2)
    _, manifest = store(sql, backing)
    before = read_ahead_threads()
    stream = DedupStream(manifest, manifest.to_bytes(), backing, KEY)
    assert stream.read(1000) == sql[:1000]
    assert len(read_ahead_threads()) > len(before)  # fetching ahead
    stream.close()
    assert read_ahead_threads() == before
    gets = backing.gets
    assert gets < len(manifest.chunks)
    time.sleep(0.5)
    assert backing.gets == gets  # nothing queued was started after the close


def test_a_missing_chunk_fetched_ahead_is_named_in_its_turn_and_stops_the_pool():
    sql = sql_like(12 * AVG_CHUNK)
    backing = SlowStore(0.01)
    _, manifest = store(sql, backing)
    victim = manifest.chunks[3].id
    del backing.objects[victim]
    before = read_ahead_threads()
    stream = DedupStream(manifest, manifest.to_bytes(), backing, KEY)
    received = bytearray()
    with pytest.raises(BadChunk, match=f"chunk 4 of {len(manifest.chunks)} \\({victim}\\) cannot be read"):
        while chunk := stream.read(65536):
            received += chunk
    assert bytes(received) == sql[: sum(c.size for c in manifest.chunks[:3])]  # chunks 1-3, in order, then stop
    assert read_ahead_threads() == before and not stream.closed  # the failure itself stopped the pool


def test_a_backup_cut_at_another_chunk_size_still_reads():
    """A manifest records each chunk's size, so a backup whose chunks were cut at another average (here 4x
    AVG_CHUNK, chunks up to 4x MAX_CHUNK; issue 28f tried 256 KiB) reads back the same, as SQL and as .sql.gz."""
    from backup_svc.storage.dedup.manifest import ChunkRef
    from backup_svc.storage.dedup.sqlgz import sqlgz_members, sqlgz_size

    other = 4 * AVG_CHUNK
    sql = sql_like(3 * other) + b"\0" * (4 * other)  # the zeros: one chunk of that size's maximum
    backing, refs, at = DictStore(), [], 0
    for cut in FastCDC(other, min_size=other // 4, max_size=4 * other).cut_buf(sql):
        plain = sql[at : at + cut.length]
        at += cut.length
        backing.put(KEY.chunk_id(plain), compress_chunk(plain))
        refs.append(ChunkRef(KEY.chunk_id(plain), len(plain), len(backing.objects[KEY.chunk_id(plain)])))
    assert max(r.size for r in refs) == 4 * other > MAX_CHUNK
    manifest = Manifest(
        backup="x",
        chunks=refs,
        sql_sha256=hashlib.sha256(sql).hexdigest(),
        sql_bytes=len(sql),
        key_check=KEY.check,
        facts={"backup_name": "x"},
    )
    manifest = Manifest.from_bytes(manifest.to_bytes())
    assert read_all(manifest, backing) == sql
    members = b"".join(sqlgz_members(DedupStream(manifest, manifest.to_bytes(), backing, KEY)))
    assert len(members) == sqlgz_size(manifest) and gzip.decompress(members) == sql
