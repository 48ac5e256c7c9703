"""age decryption as a readable file: restores, verify and drills pull the plaintext while pyrage
decrypts and authenticates it in a helper thread."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import BinaryIO, Callable, Iterable

import pyrage

from .common import AGE_MAGIC, EOF, POLL_S, QUEUE_CHUNKS, DecryptionFailed, IdentityNeeded, Stopped, WrongIdentity
from .keys import Identity

# The decryptor hands on plaintext in pieces of at least this size (pyrage writes 8 KiB at a time).
OUT_BATCH = 256 * 1024


class DecryptingReader(io.RawIOBase):
    """A read-only file of the plaintext inside an age file, decrypted as it is read.

    Every 64 KiB chunk is authenticated before its bytes are handed on, and the end of the file is
    authenticated too: a wrong key, an altered byte or a truncated file raises DecryptionFailed
    (never a plausible-looking prefix that just ends). `stored_size` / `stored_sha256` describe the
    encrypted bytes read (what is stored); closing early stops the helper thread.
    """

    def __init__(self, raw: BinaryIO, identities: Iterable[Identity], name: str = "the backup"):
        super().__init__()
        self.raw = raw
        self.name = name
        self.stored_size = 0
        self._stored_sha256 = hashlib.sha256()
        self._outbox: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._chunk = memoryview(b"")
        self._ended = False
        self._error: BaseException | None = None
        keys = [i.key for i in identities]
        self._thread = threading.Thread(target=self._run, args=(keys,), name="age-decrypt", daemon=True)
        self._thread.start()

    @property
    def stored_sha256(self) -> str:
        return self._stored_sha256.hexdigest()

    def _run(self, keys) -> None:
        batch = _Batch(self)
        try:
            pyrage.decrypt_io(_Hashing(self), batch, keys)
            batch.flush()
            self._put(EOF)
        except Stopped:
            pass
        except BaseException as exc:
            self._error = exc
            try:
                self._put(EOF)
            except Stopped:
                pass

    def _put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise Stopped()
            try:
                self._outbox.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._chunk:
            if self._ended:
                return 0
            item = self._outbox.get()
            if item is EOF:
                self._ended = True
                if self._error is not None:
                    raise _decryption_failed(self._error)
                return 0
            self._chunk = memoryview(item)
        n = min(len(buffer), len(self._chunk))
        buffer[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._thread.join()
            try:
                self.raw.close()
            finally:
                super().close()


class _Hashing:
    """The encrypted bytes as pyrage reads them, hashed on the way."""

    def __init__(self, reader: DecryptingReader):
        self.reader = reader

    def read(self, size: int = -1) -> bytes:
        if self.reader._stop.is_set():
            raise Stopped()
        data = self.reader.raw.read(size)
        self.reader._stored_sha256.update(data)
        self.reader.stored_size += len(data)
        return data


class _Batch:
    """What pyrage writes the plaintext to: gathered into pieces of OUT_BATCH for the reader's queue."""

    def __init__(self, reader: DecryptingReader):
        self.reader = reader
        self.pending = bytearray()

    def write(self, data) -> int:
        self.pending += data
        if len(self.pending) >= OUT_BATCH:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.pending:
            piece, self.pending = bytes(self.pending), bytearray()
            self.reader._put(piece)


def _decryption_failed(exc: BaseException) -> DecryptionFailed:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "No matching keys" in reason:
        return WrongIdentity(
            "it is encrypted to other keys: BACKUP_AGE_IDENTITY matches none of its recipients "
            "(a wrong or rotated key?)"
        )
    failed = DecryptionFailed(f"it does not decrypt to intact data: {reason} (altered or truncated)")
    failed.__cause__ = exc
    return failed


def decrypting_opener(
    path: str, opener: Callable[[], BinaryIO] | None, identities: Iterable[Identity] | None
) -> Callable[[], BinaryIO]:
    """An opener (as `files.reader.BackupReader` takes) that decrypts age files and passes others through.

    `opener` opens the raw bytes (default: the file at `path`). With an age file and no identity it
    raises IdentityNeeded, saying which setting is missing.
    """
    identities = list(identities or [])

    def open_maybe_decrypting() -> BinaryIO:
        raw = opener() if opener is not None else open(path, "rb")
        if not isinstance(raw, io.BufferedIOBase):
            raw = io.BufferedReader(raw, 1 << 20)
        if not raw.peek(len(AGE_MAGIC)).startswith(AGE_MAGIC):
            return raw
        if not identities:
            raw.close()
            raise IdentityNeeded(
                "it is encrypted with age: set BACKUP_AGE_IDENTITY to the private key (a key "
                "file's path or the AGE-SECRET-KEY-1… value) to read it"
            )
        return DecryptingReader(raw, identities, name=path)

    return open_maybe_decrypting


def decrypt_bytes(data: bytes, identities: Iterable[Identity]) -> bytes:
    """The plaintext of a small age file held whole (a dedup chunk or manifest). IdentityNeeded without
    identities, WrongIdentity / DecryptionFailed as DecryptingReader says them."""
    keys = [i.key for i in identities]
    if not keys:
        raise IdentityNeeded(
            "it is encrypted with age: set BACKUP_AGE_IDENTITY to the private key (a key "
            "file's path or the AGE-SECRET-KEY-1… value) to read it"
        )
    try:
        return pyrage.decrypt(bytes(data), keys)
    except Exception as exc:
        raise _decryption_failed(exc) from exc
