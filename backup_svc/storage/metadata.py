"""The end of an upload: attaching the final metadata (with the sha256, known only at the end) by a
server-side copy of the object onto itself, and reading size and sha256 back."""
from __future__ import annotations

import hashlib
import re

from .client import RetryPolicy, StorageError, with_retries

# CopyObject handles up to 5 GiB; past that the metadata is set by a server-side multipart copy
# in ranges of this size.
SINGLE_COPY_LIMIT = 5 * 1024 ** 3
COPY_PART_SIZE = 1024 ** 3
CONTENT_TYPE = "application/gzip"


def attach_metadata(client, bucket: str, key: str, size: int, metadata: dict[str, str], *, retry: RetryPolicy,
                    single_copy_limit: int = SINGLE_COPY_LIMIT, copy_part_size: int = COPY_PART_SIZE,
                    source_etag: str | None = None) -> None:
    """Replace the object's metadata with `metadata` (S3 sets metadata only when writing an object).

    With `source_etag` the copy happens only while the object is still the one with that ETag (the
    one just completed), never onto another writer's object that replaced it meanwhile.
    """
    source = {"Bucket": bucket, "Key": key}
    condition = {"CopySourceIfMatch": source_etag} if source_etag else {}
    if size <= single_copy_limit:
        with_retries(f"attaching the sha256 to {key}", lambda: client.copy_object(
            Bucket=bucket, Key=key, CopySource=source, MetadataDirective="REPLACE",
            Metadata=metadata, ContentType=CONTENT_TYPE, **condition), retry)
        return
    created = with_retries(f"attaching the sha256 to {key}", lambda: client.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType=CONTENT_TYPE, Metadata=metadata), retry)
    copy_id = created["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, copy_part_size), start=1):
            end = min(start + copy_part_size, size) - 1
            answer = with_retries(f"copying part {number} of {key}", lambda: client.upload_part_copy(
                Bucket=bucket, Key=key, UploadId=copy_id, PartNumber=number, CopySource=source,
                CopySourceRange=f"bytes={start}-{end}", **condition), retry)
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        with_retries(f"completing the copy of {key}", lambda: client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=copy_id, MultipartUpload={"Parts": parts}), retry)
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=copy_id)
        except Exception:
            pass  # left for the next prune's clean-up of day-old incomplete uploads
        raise


def read_back(client, bucket: str, key: str, size: int, sha256: str, *, retry: RetryPolicy) -> dict[str, str]:
    """HEAD the object; its metadata when its size and stored sha256 are what was sent, else StorageError."""
    head = with_retries(f"reading back {key}", lambda: client.head_object(Bucket=bucket, Key=key), retry)
    stored_size, stored_sha = head.get("ContentLength"), head.get("Metadata", {}).get("sha256")
    if stored_size != size or stored_sha != sha256:
        raise StorageError(f"read-back of {key} does not match what was sent: storage has "
                           f"{stored_size} bytes with sha256 {stored_sha}, sent {size} bytes "
                           f"with sha256 {sha256}")
    return dict(head.get("Metadata", {}))


_MULTIPART_ETAG = re.compile(r'^"?([0-9a-f]{32})-(\d+)"?$')


def assembled_as_sent(etag: str | None, part_md5s: list[bytes]) -> bool:
    """Whether the completed object's ETag is the one the parts sent make: MD5(MD5(part 1) … MD5(part N))-N,
    as S3, R2, moto and most others compute it — the storage's own account of the bytes it assembled.

    Not every provider computes it so (MinIO with encryption, Riak CS…): False means "not confirmed",
    and the caller then reads the object back in full (`read_back_bytes`) rather than failing.
    """
    match = _MULTIPART_ETAG.match(etag or "")
    return (match is not None and int(match.group(2)) == len(part_md5s)
            and match.group(1) == hashlib.md5(b"".join(part_md5s)).hexdigest())


def read_back_bytes(client, bucket: str, key: str, size: int, sha256: str, *, retry: RetryPolicy) -> None:
    """Read the whole object and compare its sha256 with what was sent; StorageError when it differs."""
    from .reader import open_object

    digest, total = hashlib.sha256(), 0
    with open_object(client, bucket, key, retry) as stream:
        while True:
            chunk = stream.read(1024 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
    if total != size or digest.hexdigest() != sha256:
        raise StorageError(f"read-back of {key} in full does not match what was sent: storage has {total} bytes "
                           f"with sha256 {digest.hexdigest()}, sent {size} bytes with sha256 {sha256}")
