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


def check_assembled(key: str, etag: str | None, part_md5s: list[bytes]) -> None:
    """StorageError when the completed object's ETag is not the one its parts make.

    S3 (and MinIO, R2, Ceph, moto…) give a multipart object the ETag MD5(MD5(part 1) … MD5(part N))-N:
    the storage's own account of the bytes it assembled, checked against the MD5s of what was sent. A
    provider whose ETag has another form is not judged by it (the size and sha256 read-back remain).
    """
    match = _MULTIPART_ETAG.match(etag or "")
    if match is None or int(match.group(2)) != len(part_md5s):
        return
    expected = hashlib.md5(b"".join(part_md5s)).hexdigest()
    if match.group(1) != expected:
        raise StorageError(f"the storage assembled {key} from other bytes than were sent: its ETag is "
                           f"{match.group(1)}-{match.group(2)}, the parts sent make {expected}-{len(part_md5s)}")
