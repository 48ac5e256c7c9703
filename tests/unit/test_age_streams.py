"""The streaming encryptor and decryptor in memory (pyrage, no processes): round trips, a file cut exactly
at an age chunk boundary, early close, and errors from either side raised in the caller's thread."""

from __future__ import annotations

import io
import os
import threading

import pyrage
import pytest

from backup_svc.crypto.common import AGE_MAGIC, DecryptionFailed, EncryptionFailed
from backup_svc.crypto.decrypt import DecryptingReader, decrypting_opener
from backup_svc.crypto.encrypt import AgeEncryptor, EncryptedChunks
from backup_svc.crypto.keys import Identity, parse_recipients

CHUNK = 64 * 1024  # age's plaintext chunk; 16 bytes of tag each on the wire


@pytest.fixture
def pair():
    identity = pyrage.x25519.Identity.generate()
    return [Identity("age", identity)], parse_recipients(str(identity.to_public()))


def encrypt(data: bytes, recipients) -> bytes:
    out = io.BytesIO()
    encryptor = AgeEncryptor(out, recipients)
    for start in range(0, len(data), 50_000):  # pieces that do not line up with age's chunks
        encryptor.write(data[start : start + 50_000])
    encryptor.finish()
    assert encryptor.plain_bytes == len(data) and encryptor.cipher_bytes == len(out.getvalue())
    return out.getvalue()


def decrypt(blob: bytes, identities) -> bytes:
    reader = DecryptingReader(io.BufferedReader(io.BytesIO(blob)), identities)
    try:
        return reader.read()
    finally:
        reader.close()


def test_round_trip_and_the_age_format(pair):
    identities, recipients = pair
    data = os.urandom(5 * CHUNK + 123)
    blob = encrypt(data, recipients)
    assert blob.startswith(AGE_MAGIC)
    assert pyrage.decrypt(blob, [i.key for i in identities]) == data  # the reference implementation agrees
    assert decrypt(blob, identities) == data
    assert b"".join(EncryptedChunks([data[:10], data[10:]], recipients)).startswith(AGE_MAGIC)


def test_a_file_cut_exactly_at_a_chunk_boundary_is_refused(pair):
    """The cut a plain stream cipher would miss: whole chunks, nothing torn. age's last-chunk flag catches it."""
    identities, recipients = pair
    blob = encrypt(os.urandom(4 * CHUNK), recipients)
    payload = blob.index(b"\n---") + blob[blob.index(b"\n---") + 1 :].index(b"\n") + 2 + 16  # header + nonce
    assert len(blob) == payload + 4 * (CHUNK + 16)  # the offsets are right: four whole chunks follow
    cut = blob[: payload + 2 * (CHUNK + 16)]
    with pytest.raises(DecryptionFailed, match="does not decrypt to intact data"):
        decrypt(cut, identities)


def test_closing_early_stops_the_helper_thread(pair):
    identities, recipients = pair
    blob = encrypt(os.urandom(40 * CHUNK), recipients)
    before = threading.active_count()
    reader = DecryptingReader(io.BufferedReader(io.BytesIO(blob)), identities)
    assert len(reader.read(1000)) == 1000
    reader.close()
    assert threading.active_count() == before


def test_a_plain_file_passes_through_the_opener_untouched(tmp_path):
    path = tmp_path / "plain.sql.gz"
    path.write_bytes(b"\x1f\x8b plain bytes")
    with decrypting_opener(str(path), None, [])() as opened:
        assert opened.read() == b"\x1f\x8b plain bytes"


def test_a_failing_downstream_surfaces_as_itself_and_the_encryptor_stops(pair):
    _, recipients = pair

    class Broken:
        def write(self, data):
            raise ConnectionError("storage went away")

    encryptor = AgeEncryptor(Broken(), recipients)
    with pytest.raises(ConnectionError, match="storage went away"):
        for _ in range(100):
            encryptor.write(os.urandom(CHUNK))
        encryptor.finish()
    encryptor.abort()
    assert not encryptor._thread.is_alive()


def test_no_recipients_is_refused(pair):
    with pytest.raises(EncryptionFailed):
        AgeEncryptor(io.BytesIO(), [])
