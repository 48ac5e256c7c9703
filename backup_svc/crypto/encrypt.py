"""age encryption as a sink: the dump writes its gzip bytes in, the age file goes out to the upload (or a
download), with bounded memory and every failure raised in the writer's thread."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from typing import Iterable, Iterator, Protocol

import pyrage

from .common import AGE_MAGIC, EOF, POLL_S, QUEUE_CHUNKS, EncryptionFailed, Stopped
from .keys import Recipient


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class AgeEncryptor:
    """A sink: `write` plaintext, the age encryption of it goes to `downstream.write` (from a helper thread).

    `finish()` ends the file (the final age chunk) and returns only when every byte reached the
    downstream sink; `abort()` stops without finishing it. An error anywhere — pyrage, the downstream
    sink, output that does not start with age's header — is raised by the next `write` or by `finish`:
    the downstream's own exception as it is (e.g. the upload's StorageError), any other as EncryptionFailed.
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
        self._downstream_error: BaseException | None = None  # e.g. the upload's StorageError: raised as it is
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
            self._head += bytes(data[: len(AGE_MAGIC) - len(self._head)])
            if not AGE_MAGIC.startswith(self._head):
                raise EncryptionFailed("the encryptor's output is not in age format; refusing to store it")
        try:
            self.downstream.write(bytes(data))
        except BaseException as exc:
            self._downstream_error = exc  # the downstream's own error is what the caller should see
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
                self._inbox.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """End the age file and wait until all of it went downstream; EncryptionFailed if it did not."""
        self._put(EOF)
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
        if self._downstream_error is not None:
            raise self._downstream_error
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
                raise Stopped("encryption aborted")
            try:
                item = self.inbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if item is EOF:
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


def encrypt_bytes(data: bytes, recipients: Iterable[Recipient]) -> bytes:
    """The age file of `data` (small objects held whole, e.g. a dedup chunk or manifest), checked to be age."""
    keys = [r.key for r in recipients]
    if not keys:
        raise EncryptionFailed("no recipients to encrypt to")
    try:
        sealed = pyrage.encrypt(bytes(data), keys)
    except Exception as exc:
        raise _as_encryption_failed(exc) from exc
    if not sealed.startswith(AGE_MAGIC):
        raise EncryptionFailed("the encryptor's output is not in age format; refusing to store it")
    return sealed
