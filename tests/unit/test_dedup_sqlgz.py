"""storage/dedup/sqlgz.py: a dedup backup's chunks as one .sql.gz of gzip members, without recompressing."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from backup_svc.storage.dedup.chunks import AVG_CHUNK
from backup_svc.storage.dedup.reader import BadChunk, DedupStream
from backup_svc.storage.dedup.sqlgz import sqlgz_members, sqlgz_size
from tests.dedup_units import KEY, DictStore, sql_like, store


def rebuilt(manifest, backing, key=KEY) -> list[bytes]:
    return list(sqlgz_members(DedupStream(manifest, manifest.to_bytes(), backing, key)))


def test_the_members_are_a_sqlgz_of_the_sql_always_the_same_bytes_of_the_promised_length():
    sql = sql_like(5 * AVG_CHUNK)
    backing = DictStore()
    _, manifest = store(sql, backing)
    members = rebuilt(manifest, backing)
    data = b"".join(members)
    assert len(members) == len(manifest.chunks) + 1 > 2  # a piece per chunk, then the last member's trailer
    assert len(data) == sqlgz_size(manifest)
    assert gzip.decompress(data) == sql
    assert hashlib.sha256(gzip.decompress(data)).hexdigest() == manifest.sql_sha256
    assert b"".join(rebuilt(manifest, backing)) == data  # fixed header fields: byte-identical every time


def test_a_damaged_chunk_is_named_and_the_last_member_is_never_released():
    sql = sql_like(4 * AVG_CHUNK)
    backing = DictStore()
    _, manifest = store(sql, backing)
    victim = manifest.chunks[1].id
    stored = bytearray(backing.objects[victim])
    stored[len(stored) // 2] ^= 0x40
    backing.objects[victim] = bytes(stored)
    stream = DedupStream(manifest, manifest.to_bytes(), backing, KEY)
    got = []
    with pytest.raises(BadChunk, match=f"chunk 2 of {len(manifest.chunks)} \\({victim}\\)"):
        for member in sqlgz_members(stream):
            got.append(member)
    assert len(got) == 1
    with pytest.raises(EOFError):  # the first member without its trailer: not a valid gzip file of part of the SQL
        gzip.decompress(got[0])


def test_a_wrong_whole_sql_withholds_the_last_member():
    backing = DictStore()
    _, manifest = store(sql_like(6 * AVG_CHUNK), backing)
    assert len(manifest.chunks) >= 2  # (random words: the number of chunks varies)
    manifest.sql_sha256 = "0" * 64
    got = []
    with pytest.raises(BadChunk, match="the reassembled SQL has sha256"):
        for member in sqlgz_members(DedupStream(manifest, manifest.to_bytes(), backing, None)):
            got.append(member)
    assert len(got) == len(manifest.chunks) - 1  # short of the length promised (sqlgz_size): a broken transfer
    with pytest.raises(EOFError):  # ... and ending inside a member: gzip rejects it
        gzip.decompress(b"".join(got))


def test_a_chunk_with_bytes_after_its_stream_is_refused():
    """zlib.decompress ignores bytes after the end of a stream: the manifest's stored size catches them."""
    backing = DictStore()
    _, manifest = store(sql_like(2 * AVG_CHUNK), backing)
    victim = manifest.chunks[0].id
    backing.objects[victim] += b"junk"
    with pytest.raises(BadChunk, match=f"chunk 1 of {len(manifest.chunks)} \\({victim}\\) is .* bytes stored"):
        rebuilt(manifest, backing)


def test_a_download_abandoned_after_one_member_stops_the_read_ahead():
    """The client went away: the service closes the members' generator, which closes the stream."""
    from tests.dedup_units import SlowStore, read_ahead_threads

    sql = sql_like(12 * AVG_CHUNK)
    backing = SlowStore(0.2)
    _, manifest = store(sql, backing)
    before = read_ahead_threads()
    stream = DedupStream(manifest, manifest.to_bytes(), backing, KEY)
    members = sqlgz_members(stream)
    next(members)
    assert len(read_ahead_threads()) > len(before)
    members.close()
    assert stream.closed and read_ahead_threads() == before
