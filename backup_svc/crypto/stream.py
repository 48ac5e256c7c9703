"""age encryption and decryption as streams, with bounded memory and failures that surface.

pyrage's `encrypt_io` / `decrypt_io` pull from a reader and push into a writer, releasing the GIL
while they work; a backup is pushed chunk by chunk and restores pull it. So each side runs pyrage
in one helper thread, joined to the caller by a small bounded queue: at most a few chunks in
flight, and any error on either side is raised in the caller's thread.
"""
from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import BinaryIO, Callable, Iterable, Iterator, Protocol

import pyrage

from .keys import Identity, Recipient

AGE_MAGIC = b"age-encryption.org/v1\n"
ENCRYPTED_SUFFIX = ".age"
# Chunks waiting between the caller and pyrage's thread: with the dump's ~64 KiB chunks, well under
# a megabyte in flight.
QUEUE_CHUNKS = 8
# The decryptor hands on plaintext in pieces of at least this size (pyrage writes 8 KiB at a time).
OUT_BATCH = 256 * 1024
_POLL_S = 0.2
_EOF = None


class EncryptionFailed(Exception):
    """Encrypting stopped (or produced something that is not age); nothing may be stored."""


class DecryptionFailed(Exception):
    """The bytes cannot be decrypted to intact plaintext (wrong key, truncated, altered); one-line message."""


class IdentityNeeded(DecryptionFailed):
    """The backup is age-encrypted and no identity was given."""


class WrongIdentity(DecryptionFailed):
    """The backup is age-encrypted to keys none of the given identities match."""


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


def is_encrypted_name(name: str) -> bool:
    """Whether a backup's name says it is age-encrypted (`….sql.gz.age`)."""
    return name.endswith(ENCRYPTED_SUFFIX)


class _Stopped(Exception):
    pass


class AgeEncryptor:
    """A sink: `write` plaintext, the age encryption of it goes to `downstream.write` (from a helper thread).

    `finish()` ends the file (the final age chunk) and returns only when every byte reached the
    downstream sink; `abort()` stops without finishing it. An error anywhere — pyrage, the downstream
    sink, output that does not start with age's header — is raised by the next `write` or by `finish`
    as EncryptionFailed (the downstream's own exception as its cause).
    """

    def __init__(self, downstream: Sink, recipients: Iterable[Recipient]):
        self.downstream = downstream
        self.recipients = list(recipients)
        if not self.recipients:
            raise EncryptionFailed("no recipients to encrypt to")
        self.plain_bytes = 0
        self.cipher_bytes = 0
        self._plain_sha256 = hashlib.sha256()
        self._inbox: queue.Queue = queue.Queue(QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._head = b""  # the first output bytes, checked against AGE_MAGIC
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="age-encrypt", daemon=True)
        self._thread.start()

    @property
    def plain_sha256(self) -> str:
        """SHA-256 of the plaintext written so far (the bytes a download would have sent)."""
        return self._plain_sha256.hexdigest()

    # -- pyrage's side (helper thread) --------------------------------------------------------
    def _run(self) -> None:
        try:
            pyrage.encrypt_io(_QueueReader(self._inbox, self._stop), _Forward(self), [r.key for r in self.recipients])
        except BaseException as exc:  # handed to the caller's thread
            self._error = self._error or exc
            self._stop.set()

    def _forward(self, data: bytes) -> None:
        if len(self._head) < len(AGE_MAGIC):
            self._head += bytes(data[:len(AGE_MAGIC) - len(self._head)])
            if not AGE_MAGIC.startswith(self._head):
                raise EncryptionFailed("the encryptor's output is not in age format; refusing to store it")
        try:
            self.downstream.write(bytes(data))
        except BaseException as exc:
            self._error = exc  # the downstream's own error is what the caller should see
            raise
        self.cipher_bytes += len(data)

    # -- the caller's side --------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        """Queue `data` for encryption (blocks while the queue is full); EncryptionFailed once anything failed."""
        self._raise_if_failed()
        self._put(bytes(data))
        self.plain_bytes += len(data)
        self._plain_sha256.update(data)
        return len(data)

    def _put(self, item) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._inbox.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """End the age file and wait until all of it went downstream; EncryptionFailed if it did not."""
        self._put(_EOF)
        self._thread.join()
        self._raise_if_failed()
        if self._head != AGE_MAGIC:
            raise EncryptionFailed("the encryptor produced no age file; refusing to store it")
        self._finished = True

    def abort(self) -> None:
        """Stop encrypting without ending the file (the caller discards what went downstream)."""
        if not self._finished:
            self._stop.set()
            self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise _as_encryption_failed(self._error)
        if self._stop.is_set():
            raise EncryptionFailed("the encryptor stopped")

    def __enter__(self) -> "AgeEncryptor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.abort()


def _as_encryption_failed(exc: BaseException) -> EncryptionFailed:
    if isinstance(exc, EncryptionFailed):
        return exc
    failed = EncryptionFailed(f"encrypting failed: {exc}")
    failed.__cause__ = exc
    return failed


class _QueueReader(io.RawIOBase):
    """What pyrage reads the plaintext from: the caller's queued chunks, never more than asked for."""

    def __init__(self, inbox: queue.Queue, stop: threading.Event):
        super().__init__()
        self.inbox, self.stop = inbox, stop
        self.chunk = memoryview(b"")
        self.ended = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self.chunk:
            if self.ended:
                return b""
            if self.stop.is_set():
                raise _Stopped("encryption aborted")
            try:
                item = self.inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _EOF:
                self.ended = True
                return b""
            self.chunk = memoryview(item)
        size = len(self.chunk) if size is None or size < 0 else size
        out, self.chunk = self.chunk[:size], self.chunk[size:]
        return bytes(out)


class _Forward:
    """What pyrage writes the ciphertext to."""

    def __init__(self, encryptor: AgeEncryptor):
        self.encryptor = encryptor

    def write(self, data) -> int:
        self.encryptor._forward(data)
        return len(data)

    def flush(self) -> None:
        pass


def encrypt_chunks(chunks: Iterable[bytes], recipients: Iterable[Recipient]) -> Iterator[bytes]:
    """The age encryption of `chunks`, yielded as it is produced (for a streamed download).

    Input is pulled only as output is taken, so memory stays bounded by a slow reader. An error in
    `chunks` propagates (the file stays unfinished: age rejects it as truncated).
    """
    out: queue.SimpleQueue = queue.SimpleQueue()

    class _Collect:
        def write(self, data: bytes) -> int:
            out.put(data)
            return len(data)

    encryptor = AgeEncryptor(_Collect(), recipients)
    try:
        for chunk in chunks:
            encryptor.write(chunk)
            yield from _drain(out)
        encryptor.finish()
        yield from _drain(out)
    finally:
        encryptor.abort()


def _drain(out: queue.SimpleQueue) -> Iterator[bytes]:
    pieces = []
    while True:
        try:
            pieces.append(out.get_nowait())
        except queue.Empty:
            break
    if pieces:
        yield b"".join(pieces)


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
            self._put(_EOF)
        except _Stopped:
            pass
        except BaseException as exc:
            self._error = exc
            try:
                self._put(_EOF)
            except _Stopped:
                pass

    def _put(self, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped()
            try:
                self._outbox.put(item, timeout=_POLL_S)
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
            if item is _EOF:
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
            raise _Stopped()
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
        return WrongIdentity("it is encrypted to other keys: BACKUP_AGE_IDENTITY matches none of its recipients "
                             "(a wrong or rotated key?)")
    failed = DecryptionFailed(f"it does not decrypt to intact data: {reason} (altered or truncated)")
    failed.__cause__ = exc
    return failed


def decrypting_opener(path: str, opener: Callable[[], BinaryIO] | None,
                      identities: Iterable[Identity] | None) -> Callable[[], BinaryIO]:
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
            raise IdentityNeeded("it is encrypted with age: set BACKUP_AGE_IDENTITY to the private key (a key "
                                 "file's path or the AGE-SECRET-KEY-1… value) to read it")
        return DecryptingReader(raw, identities, name=path)

    return open_maybe_decrypting


class EncryptedChunks:
    """Iterate the age encryption of `chunks` (as `encrypt_chunks`), with a `close()` that stops the
    encryptor whether or not iteration ever started, and `sha256` / `size` of what was yielded."""

    def __init__(self, chunks: Iterable[bytes], recipients: Iterable[Recipient]):
        self._chunks = chunks
        self._recipients = list(recipients)
        self._generator: Iterator[bytes] | None = None
        self._sha256 = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        self._generator = encrypt_chunks(self._chunks, self._recipients)
        for piece in self._generator:
            self._sha256.update(piece)
            self.size += len(piece)
            yield piece

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
