"""A streaming sink into an S3 multipart upload: completed only when told so, aborted otherwise.

Memory: PART_BUFFERS = 2 buffers of PART_SIZE, 32 MiB whatever the backup's size. The writer fills one
while the other is hashed and sent; a full one goes on the wire at once, even while the other is still
there (up to PARTS_IN_FLIGHT parts at once, so the link does not idle while a part's answer comes back),
and the writer then waits for the older part to be answered before it fills that buffer again. A third
buffer, to fill while both parts are on the wire, made the peak depend on the storage's pace: 123–127 MB
(budget 120) instead of 107–111 MB whenever the storage fell behind (bench/README.md). The buffers are
allocated once, at full size, and reused part after part: a buffer grown by appending (and freed after
each part) left the C allocator copying it on growth and keeping freed space in its heaps, so the
process's peak wandered 15–30 MB above the buffers' sum from one run to the next.
The sha256 of the whole object is computed off the writer's path: each part's sender thread hashes
its part (hashlib releases the GIL) after the previous part's sender did, so the digest follows the
bytes' order while the writer goes on filling the next part.
Each part carries a CRC32 (`x-amz-checksum-crc32`, ISA-L's: ~6 ms per 57 MB) where the storage keeps S3's
checksums, and a Content-MD5 (~120 ms per 57 MB) where it does not; the completed object's composite checksum
(or its ETag) must then be the one the parts make, or the object is read back in full (metadata.py).
Largest object: MAX_PARTS × PART_SIZE = 10,000 × 16 MiB = 156.25 GiB; a bigger backup is refused
(ObjectTooLarge) the moment its bytes would need part 10,001, and the upload is aborted.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from isal.isal_zlib import crc32

from .client import RetryPolicy, StorageError, error_code, object_exists, with_retries
from .companion import companion_key, delete_companion, put_companion
from .metadata import (
    CHECKSUM_ALGORITHM,
    CONTENT_TYPE,
    assembled_as_checksummed,
    assembled_as_sent,
    crc32_checksum,
    read_back,
    read_back_bytes,
)
from .partbody import PartBody
from .sameobject import TOKEN, complete_unless_taken, delete_if_ours

log = logging.getLogger(__name__)

# 16 MiB parts: big enough that 10,000 of them hold any backup this sidecar is meant for (156 GiB of
# gzip, roughly a terabyte of SQL), small enough that two in memory keep the process under its
# 120 MB budget. S3 needs ≥ 5 MiB for every part but the last.
PART_SIZE = 16 * 1024 * 1024
MAX_PARTS = 10_000
# Seconds an abort waits for a part already on the wire, so the abort can be repeated after it
# (S3 may keep a part that finished uploading after the first abort).
IN_FLIGHT_WAIT_S = 30
# The same when the run was cancelled (the server is shutting down): the grace period is short, and
# a part that lands after the abort is aborted by the next run's clean-up.
CANCELLED_IN_FLIGHT_WAIT_S = 3
# How often a writer waiting for the part on the wire looks whether the run was cancelled.
CANCEL_POLL_S = 0.2
# Parts on the wire at once. Two keep the link busy while one part's request is being answered
# (bench/README.md).
PARTS_IN_FLIGHT = 2
# Part buffers in memory: one per part on the wire, and never fewer than two, so the writer fills one
# while the other is sent. Each one more costs PART_SIZE: with a third the process went over its budget.
PART_BUFFERS = 2


class ObjectTooLarge(StorageError):
    """The backup outgrew the largest object a multipart upload of this part size can make."""


@dataclass(frozen=True)
class StoredObject:
    """A complete object whose size and sha256 were read back from storage and matched."""

    bucket: str
    key: str
    size: int
    sha256: str
    metadata: dict[str, str]


class MultipartUpload:
    """Write bytes in; `complete(metadata)` makes the object, `abort()` (or leaving the `with`) drops it.

    `write` returns once the bytes are buffered; full parts are sent by background threads, each with its
    own retries (RetryPolicy) and a checksum the storage checks: a CRC32 (`x-amz-checksum-crc32`) where
    the storage keeps checksums, else Content-MD5 (see `start`). Any failure surfaces from the next `write` or
    from `complete` as StorageError. Until `complete` has read the object back, nothing is stored
    under the key: leaving the `with` block by any other path aborts the upload (and deletes an
    object whose read-back failed).
    """

    def __init__(
        self,
        client,
        bucket: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        part_size: int = PART_SIZE,
        max_parts: int = MAX_PARTS,
        retry: RetryPolicy = RetryPolicy(),
        cancelled: Callable[[], bool] = lambda: False,
        parts_in_flight: int = PARTS_IN_FLIGHT,
        part_client=None,
        content_type: str = CONTENT_TYPE,
        deferred: bool = False,
    ):
        self.client = client
        # deferred: the upload is created when its first part is sent (or at complete), so the bytes'
        # source (pg_dump) starts while the storage is being reached; the refusal to overwrite comes then.
        self.deferred = deferred
        self.content_type = content_type
        # Parts may go through a client of their own, with its own send deadline (client.make_part_client).
        self.part_client = part_client if part_client is not None else client
        self.bucket = bucket
        self.key = key
        # The token tells this upload's object from another writer's under the same key (sameobject.py).
        self.token = secrets.token_hex(8)
        self.metadata = {**(metadata or {}), TOKEN: self.token}
        self.cancelled = cancelled  # checked while waiting and before each retry: stop at once when set
        self.part_size = part_size
        self.max_parts = max_parts
        self.retry = retry
        self.parts_in_flight = max(1, parts_in_flight)
        self.part_buffers = max(PART_BUFFERS, self.parts_in_flight)
        self._buffers_made = 0
        self.upload_id: str | None = None
        # Each part carries a CRC32 checksum where the storage keeps them, else a Content-MD5 (decided by start()).
        self.checksums = True
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._crc32 = 0  # of the same bytes in the same order: the writer's cross-check (`crc32`)
        self._buffer: bytearray | None = None  # the part being filled, its first _fill bytes (see _take_buffer)
        self._fill = 0
        self._spare: list[bytearray] = []  # buffers whose part has been sent, ready for the next part
        self._spare_lock = threading.Lock()
        self._parts: list[dict[str, Any]] = []  # {"PartNumber", "ETag"} of every part sent or being sent
        self._pending: list[Future] = []  # parts on the wire, oldest first
        self._hashed = threading.Event()  # the last handed-on part is in the sha256
        self._hashed.set()
        self._state = "new"  # new → open → completing → complete | aborted
        self._completed = False  # our CompleteMultipartUpload made the object under the key
        self._attached = False  # its final metadata (sha256, ownership record) is recorded (companion.py)
        self.left_behind: list[str] = []  # what a failed abort left in the bucket, in words

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of every byte written so far (waits for the parts handed on to be hashed)."""
        self._hashed.wait()
        digest = self._sha256.copy()
        if self._buffer is not None:
            digest.update(memoryview(self._buffer)[: self._fill])
        return digest.hexdigest()

    @property
    def crc32(self) -> int:
        """CRC32 of every byte written so far, as `sha256` (a cheap check that the parts hold what was written)."""
        self._hashed.wait()
        check = self._crc32
        if self._buffer is not None:
            check = crc32(memoryview(self._buffer)[: self._fill], check)
        return check

    @property
    def max_size(self) -> int:
        """The largest object this upload can make."""
        return self.part_size * self.max_parts

    # -- the sink ------------------------------------------------------------------------------
    def __enter__(self) -> "MultipartUpload":
        if self.deferred:
            self._state = "pending"
        else:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._state != "complete":
            self.abort()
            if self.left_behind and isinstance(exc_info[1], BaseException):
                exc_info[1].left_behind = list(self.left_behind)  # what the failure message must say is left

    def start(self) -> None:
        """Create the multipart upload (content type, first metadata); refuse to replace an existing object."""
        if self._exists():
            raise StorageError(
                f"{self.key} already exists in bucket {self.bucket}; a stored backup is never overwritten"
            )
        created = with_retries(f"starting the upload of {self.key}", self._create, self.retry)
        # A storage that keeps checksums says so in its answer; one that ignored the request gets Content-MD5s.
        self.checksums = self.checksums and created.get("ChecksumAlgorithm", "").upper() == CHECKSUM_ALGORITHM
        if not self.checksums:
            log.info("%s: the storage keeps no CRC32 checksums; the parts carry Content-MD5", self.key)
        self.upload_id = created["UploadId"]
        self._state = "open"

    def _create(self) -> dict:
        """CreateMultipartUpload, asking for CRC32 checksums; without them where the storage refuses the request."""
        create = self.client.create_multipart_upload
        if self.checksums:
            try:
                return create(
                    Bucket=self.bucket,
                    Key=self.key,
                    ContentType=self.content_type,
                    Metadata=self.metadata,
                    ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                )
            except Exception as exc:
                code, status = error_code(exc)
                if status not in (400, 501):  # 400/501: the checksum header is what a storage may not know
                    raise
                log.info(
                    "%s: the storage refused a checksum algorithm (%s); the parts carry Content-MD5", self.key, code
                )
                self.checksums = False
        return create(Bucket=self.bucket, Key=self.key, ContentType=self.content_type, Metadata=self.metadata)

    def _exists(self) -> bool:
        return object_exists(self.client, self.bucket, self.key, f"checking {self.key}", self.retry)

    def write(self, data: bytes) -> int:
        """Buffer `data`, sending each part as it fills; ObjectTooLarge / StorageError when it cannot."""
        if self._state not in ("open", "pending"):
            raise StorageError(f"the upload of {self.key} is {self._state}, not open")
        view = memoryview(data)
        while view:
            if len(self._parts) >= self.max_parts:
                raise ObjectTooLarge(
                    f"the backup is larger than the largest object this service stores "
                    f"({_gib(self.max_size)}: {self.max_parts} parts of {_mib(self.part_size)}); "
                    f"the upload was stopped before part {self.max_parts + 1}"
                )
            if self._buffer is None:
                self._buffer = self._take_buffer()
            taken = min(self.part_size - self._fill, len(view))
            self._buffer[self._fill : self._fill + taken] = view[:taken]
            self._fill += taken
            self.size += taken
            view = view[taken:]
            if self._fill >= self.part_size:
                self._send_buffer()
        return len(data)

    def _send_buffer(self) -> None:
        if self._state == "pending":
            self.start()
        self._reap_done()  # a failed part surfaces at the next part, not only when the window is full
        while len(self._pending) >= self.parts_in_flight:  # at most parts_in_flight parts on the wire
            self._wait_for_oldest()
        buffer = self._buffer if self._buffer is not None else self._take_buffer()
        part = memoryview(buffer)[: self._fill]
        self._buffer, self._fill = None, 0
        number = len(self._parts) + 1
        entry: dict[str, Any] = {"PartNumber": number}
        self._parts.append(entry)
        previous, self._hashed = self._hashed, threading.Event()
        self._pending.append(in_daemon_thread(self._upload_part, number, part, entry, previous, self._hashed, buffer))

    def _take_buffer(self) -> bytearray:
        """A spare part buffer, a new one while fewer than part_buffers exist, or else the oldest part's
        once it has been answered (the writer waits for it here)."""
        while True:
            if self._state == "aborted":  # by another thread while this one waited: its buffers are dropped
                raise StorageError(f"the upload of {self.key} is aborted, not open")
            with self._spare_lock:
                if self._spare:
                    return self._spare.pop()
            # (nothing on the wire to wait for cannot happen while the upload is open: a new one rather than a hang)
            if self._buffers_made < self.part_buffers or not self._pending:
                self._buffers_made += 1
                return bytearray(self.part_size)
            self._wait_for_oldest()  # its sender hands its buffer back before the part counts as done

    def _give_back(self, buffer: bytearray) -> None:
        with self._spare_lock:
            if self._state != "aborted":
                self._spare.append(buffer)

    def _reap_done(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()  # re-raises the part's StorageError here, in the writer's thread

    def _wait_for_pending(self) -> None:
        while self._pending:
            self._wait_for_oldest()

    def _wait_for_oldest(self) -> None:
        oldest = self._pending[0]
        while not oldest.done():
            if self.cancelled():
                raise StorageError(f"the upload of {self.key} was stopped: the service is shutting down")
            try:
                oldest.result(timeout=CANCEL_POLL_S)
            except FutureTimeout:
                continue
            except Exception:  # the part failed: re-raised below (a signal's exception goes on at once)
                break
        self._pending.pop(0)
        oldest.result()  # re-raises the part's StorageError here, in the writer's thread

    def _upload_part(
        self,
        number: int,
        part: memoryview,
        entry: dict[str, Any],
        previous: threading.Event,
        hashed: threading.Event,
        buffer: bytearray,
    ) -> None:
        try:
            self._send_part(number, part, entry, previous, hashed)
        finally:  # its bytes are not read again (a retry happens inside): the buffer takes a later part
            self._give_back(buffer)

    def _send_part(
        self, number: int, part: memoryview, entry: dict[str, Any], previous: threading.Event, hashed: threading.Event
    ) -> None:
        try:  # the sha256 in the bytes' order: after the previous part's, off the writer's thread
            previous.wait()
            self._sha256.update(part)
            self._crc32 = crc32(part, self._crc32)
        finally:
            hashed.set()
        if self.checksums:  # what the completed object's checksum (or ETag) is checked against (metadata.py)
            checksum = entry["ChecksumCRC32"] = crc32_checksum(part)
            check = {"ChecksumAlgorithm": CHECKSUM_ALGORITHM, "ChecksumCRC32": checksum}
        else:
            digest = entry["MD5"] = hashlib.md5(part).digest()
            check = {"ContentMD5": base64.b64encode(digest).decode()}

        def send():
            # a file, not bytes: sent in small writes, each under the timeout (partbody.py)
            answer = self.part_client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=PartBody(part),
                **check,
            )
            # S3 refuses a part whose bytes do not match the header (400 BadDigest); a storage that answers with
            # a checksum of other bytes received other bytes
            stored = answer.get("ChecksumCRC32")
            if self.checksums and stored is not None and stored != check["ChecksumCRC32"]:
                raise StorageError(
                    f"part {number} of {self.key}: the storage holds CRC32 {stored} for it, the part sent has "
                    f"{check['ChecksumCRC32']} (the bytes were altered on the way)"
                )
            return answer

        response = with_retries(
            f"uploading part {number} of {self.key}",
            send,
            self.retry,
            cancelled=lambda: self._state == "aborted" or self.cancelled(),
        )
        entry["ETag"] = response["ETag"]

    # -- the end -------------------------------------------------------------------------------
    def complete(self, metadata: Mapping[str, str] | None = None) -> StoredObject:
        """Send the last part, complete the upload, record `metadata` + sha256 beside it, and read it back.

        Call this only when the backup is known good. StorageError when anything fails, in which
        case no object is left under the key (the caller's `with` aborts the upload).
        """
        if self._state not in ("open", "pending"):
            raise StorageError(f"the upload of {self.key} is {self._state}, not open")
        if self._fill or not self._parts:
            self._send_buffer()
        self._wait_for_pending()
        self._state = "completing"
        with self._spare_lock:  # every part is answered: the buffers are not needed through completion and read-back
            self._spare = []
        sha256 = self._sha256.hexdigest()
        final_metadata = {**self.metadata, **(metadata or {}), "sha256": sha256}
        answer = self._finish_upload()
        self._completed = True
        if self.checksums:
            # the object's own HEAD: its checksum (S3 also answers it on completion, moto only here), and the ETag
            # its sha256 record names (the checksum vouches for the bytes, whatever form the ETag has)
            head = self._head(checksum=True)
            etag = head.get("ETag")
            checksum = head.get("ChecksumCRC32") or answer.get("ChecksumCRC32")
            vouched = assembled_as_checksummed(checksum, [p["ChecksumCRC32"] for p in self._parts])
            account = f"CRC32 {checksum} is not the parts' checksums"
        else:
            etag = answer.get("ETag")
            vouched = assembled_as_sent(etag, [p["MD5"] for p in self._parts])
            account = f"ETag {etag} is not the parts' MD5s"
            etag = etag if vouched else None
        if not vouched:
            # the storage's account does not vouch for the bytes: read them all back before the object is called ours
            log.info("%s: the storage's %s; reading it back in full", self.key, account)
            read_back_bytes(self.client, self.bucket, self.key, self.size, sha256, retry=self.retry)
        self._attached = True  # before the write: a lost answer may still have stored the record
        # the ETag a reader sees (HEAD's, where the completion's did not vouch for the bytes)
        put_companion(
            self.client,
            self.bucket,
            self.key,
            etag=etag or self._head()["ETag"],
            size=self.size,
            metadata=final_metadata,
            retry=self.retry,
        )
        stored = self._read_back(sha256)
        self._state = "complete"
        return stored

    def _finish_upload(self) -> dict:
        """Complete the upload unless the key is taken (sameobject.py); the storage's answer."""
        if self._exists():  # the check that still holds where the storage ignores If-None-Match
            raise StorageError(
                f"{self.key} already exists in bucket {self.bucket}: another writer stored it "
                f"while this backup ran; a stored backup is never overwritten"
            )
        parts = [{k: p[k] for k in ("PartNumber", "ETag", "ChecksumCRC32") if k in p} for p in self._parts]
        return complete_unless_taken(
            self.client, self.bucket, self.key, self.upload_id, parts, self.token, retry=self.retry
        )

    def _head(self, *, checksum: bool = False) -> dict:
        """HEAD the completed object (with its CRC32 checksum when asked)."""
        extra = {"ChecksumMode": "ENABLED"} if checksum else {}
        return with_retries(
            f"reading back {self.key}",
            lambda: self.client.head_object(Bucket=self.bucket, Key=self.key, **extra),
            self.retry,
        )

    def _read_back(self, sha256: str) -> StoredObject:
        stored_metadata = read_back(self.client, self.bucket, self.key, self.size, sha256, retry=self.retry)
        if stored_metadata.get(TOKEN) != self.token:
            raise StorageError(f"read-back of {self.key}: the object there was written by another upload")
        return StoredObject(bucket=self.bucket, key=self.key, size=self.size, sha256=sha256, metadata=stored_metadata)

    def abort(self) -> bool:
        """Drop the upload (and an object completed but not read back); True when storage confirmed it.

        Safe to call on every path and more than once. Never raises for storage errors: it logs them
        (prune later aborts uploads left behind for more than a day).
        """
        if self._state == "pending":  # nothing was created in storage: only the buffers to drop
            self._state = "aborted"
            with self._spare_lock:
                self._buffer, self._fill, self._spare = None, 0, []
            return True
        if self._state in ("complete", "aborted", "new"):
            return self._state != "complete"
        completing = self._state == "completing"
        self._state = "aborted"  # stops the sender's retries
        with self._spare_lock:
            self._buffer, self._fill, self._spare = None, 0, []
        ok = self._abort_upload(self.upload_id)
        pending, self._pending = [p for p in self._pending if not p.done()], []
        if pending:
            deadline = time.monotonic() + (CANCELLED_IN_FLIGHT_WAIT_S if self.cancelled() else IN_FLIGHT_WAIT_S)
            for future in pending:
                try:
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
                except BaseException:
                    pass
            ok = self._abort_upload(self.upload_id) and ok  # a part that landed after the first abort
        if not ok:
            self.left_behind.append(
                f"an incomplete upload of {self.key} (not an object; a later upload aborts it once it is a day old)"
            )
        if completing and self._completed:
            # the record first: an object without one claims nothing; a record without its object neither
            recorded = self._attached and not self._drop_record()
            if not self._delete_unverified():
                ok = False
                self.left_behind.append(
                    f"the object {self.key}, which could not be verified"
                    + (
                        f": its sha256 record {companion_key(self.key)} claims it is a backup; delete both by hand"
                        if recorded
                        else " and has no sha256 (listings, retention and the staleness alarm ignore it); delete it by hand"
                    )
                )
            elif recorded:
                ok = False
                self.left_behind.append(
                    f"the sha256 record {companion_key(self.key)}, which names no object any "
                    f"more (harmless); delete it by hand"
                )
        return ok

    def _abort_upload(self, upload_id: str | None) -> bool:
        if upload_id is None:
            return True

        def abort():
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
            except Exception as exc:
                if error_code(exc)[0] != "NoSuchUpload":  # already gone (aborted or completed): fine
                    raise

        try:
            with_retries(f"aborting the upload of {self.key}", abort, self.retry)
            return True
        except StorageError as exc:
            log.error("%s; it is aborted by the next prune once it is a day old", exc)
            return False

    def _drop_record(self) -> bool:
        """Remove this upload's sha256 record (companion.py); True when it is gone (or was never written)."""
        try:
            delete_companion(self.client, self.bucket, self.key, retry=self.retry)
            return True
        except StorageError as exc:
            log.error("%s", exc)
            try:
                return not object_exists(
                    self.client,
                    self.bucket,
                    companion_key(self.key),
                    f"checking the sha256 record of {self.key}",
                    self.retry,
                )
            except StorageError:
                return False

    def _delete_unverified(self) -> bool:
        """Remove an object this upload completed but could not read back as sent (never another writer's)."""
        try:
            delete_if_ours(self.client, self.bucket, self.key, self.token, retry=self.retry)
            return True
        except StorageError as exc:
            log.error("%s", exc)
            return False


def in_daemon_thread(fn, *args) -> Future:
    """`fn(*args)` in a thread of its own that never holds up the process's exit (an executor's threads
    are joined at exit: a part stuck on a dead link would keep a stopping server alive until SIGKILL)."""
    future: Future = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    threading.Thread(target=run, name="s3-part", daemon=True).start()
    return future


def _mib(n: int) -> str:
    return f"{n / 1024**2:g} MiB"


def _gib(n: int) -> str:
    return f"{n / 1024**3:g} GiB"
