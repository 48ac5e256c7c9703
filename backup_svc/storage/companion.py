"""The sha256 (and the rest of the final metadata) of a stored backup in a tiny companion object,
`<key>.sha256`, instead of a server-side copy of the whole object onto itself.

S3 sets an object's metadata only when it writes the object, and the sha256 is known only at the end
of the upload; copying the object onto itself to attach it is a second full pass through the storage
server (issue 25 measured it). The companion is written after the object is complete and checked, and
counts only for the object it names: its own metadata carries the object's ETag, size and upload token,
and a reader (`with_companion`) takes it only when all three match the object it has in hand. So a
process killed at any step leaves either no object, an object with no sha256 (not a backup: listings,
retention and the staleness alarm ignore it), or an object and its companion — never an object
claiming a hash it does not have. Its body is a `sha256sum` line, so `sha256sum -c` checks a
downloaded pair.

Objects stored before this (sha256 in their own metadata) are read as they are.
"""

from __future__ import annotations

from typing import Mapping

from .client import RetryPolicy, error_code, with_retries
from .sameobject import TOKEN

SUFFIX = ".sha256"
OBJECT_ETAG = "object-etag"
OBJECT_SIZE = "object-size"


def companion_key(key: str) -> str:
    return key + SUFFIX


def put_companion(
    client, bucket: str, key: str, *, etag: str, size: int, metadata: Mapping[str, str], retry: RetryPolicy
) -> None:
    """Write `<key>.sha256` for the object `key` with this ETag and size; `metadata` holds its sha256."""
    name = key.rsplit("/", 1)[-1]
    body = f"{metadata['sha256']}  {name}\n".encode()
    record = {**metadata, OBJECT_ETAG: etag.strip('"'), OBJECT_SIZE: str(size)}
    with_retries(
        f"recording the sha256 of {key}",
        lambda: client.put_object(
            Bucket=bucket, Key=companion_key(key), Body=body, ContentType="text/plain", Metadata=record
        ),
        retry,
    )


def with_companion(
    client,
    bucket: str,
    key: str,
    metadata: Mapping[str, str],
    *,
    etag: str | None,
    size: int | None,
    retry: RetryPolicy = RetryPolicy(),
) -> dict[str, str]:
    """The object's metadata, completed from its companion when the object itself carries no sha256.

    The companion counts only when its ETag, size and upload token are the object's (another upload's
    companion, or one left from a replaced object, is ignored). StorageError when storage cannot be read.
    """
    own = dict(metadata)
    if own.get("sha256") or not own.get(TOKEN) or etag is None:
        return own

    def head():
        try:
            return client.head_object(Bucket=bucket, Key=companion_key(key)).get("Metadata", {})
        except Exception as exc:
            if error_code(exc)[1] == 404 or error_code(exc)[0] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    record = with_retries(f"reading the sha256 record of {key}", head, retry)
    if (
        not record
        or record.get(OBJECT_ETAG) != etag.strip('"')
        or record.get(OBJECT_SIZE) != str(size)
        or record.get(TOKEN) != own.get(TOKEN)
        or not record.get("sha256")
    ):
        return own
    return {**own, **{k: v for k, v in record.items() if k not in (OBJECT_ETAG, OBJECT_SIZE)}}


def delete_companion(client, bucket: str, key: str, *, retry: RetryPolicy) -> None:
    """Remove `<key>.sha256` (after its object: an orphaned record names no object and claims nothing)."""
    with_retries(
        f"deleting the sha256 record of {key}",
        lambda: client.delete_object(Bucket=bucket, Key=companion_key(key)),
        retry,
    )
