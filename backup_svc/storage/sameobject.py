"""Writes that never replace another writer's object under the same key.

Two services whose backups share a name (every Railway database is `railway`) and a prefix, started
in the same second, write the same key. The completion carries `If-None-Match: *`, so a storage that
supports conditional writes (AWS S3, Cloudflare R2, MinIO, moto…) refuses it with 412 when the key
exists; for one that ignores the header, the upload checks with a HEAD just before completing (a
window of milliseconds, not the whole dump). Each upload carries a random token in its metadata, so
an object found under the key is known to be ours or not: a retried completion whose first try
succeeded is recognised, and a clean-up never deletes another writer's object.
"""

from __future__ import annotations

import logging

from .client import RetryPolicy, StorageError, error_code, with_retries

log = logging.getLogger(__name__)

TOKEN = "upload-token"


def _token_at(client, bucket: str, key: str, retry: RetryPolicy) -> str | None:
    """The upload token of the object under `key` (None: no object, or one without a token)."""

    def head():
        try:
            return client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(TOKEN)
        except Exception as exc:
            if error_code(exc)[1] == 404:
                return None
            raise

    return with_retries(f"looking up {key}", head, retry)


def complete_unless_taken(
    client, bucket: str, key: str, upload_id: str, parts: list[dict], token: str, *, retry: RetryPolicy
) -> dict:
    """CompleteMultipartUpload with If-None-Match: *; the storage's answer (its ETag, and the object's
    ChecksumCRC32 where the parts carried one), or {} when a retry found the first try's object.

    StorageError when the key holds another writer's object (the upload is left to be aborted).
    """
    conditional = [True]
    tries = []

    def finish():
        tries.append(1)
        extra = {"IfNoneMatch": "*"} if conditional[0] else {}
        try:
            answer = client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **extra
            )
            return answer
        except Exception as exc:
            code, status = error_code(exc)
            if status == 501 or code == "NotImplemented":  # no conditional writes here: the HEAD before must do
                log.warning("the storage does not support If-None-Match on completion; relying on the check before it")
                conditional[0] = False
                return finish()
            if len(tries) > 1 and (code == "NoSuchUpload" or status == 412):
                # A retried completion whose first try did succeed (the answer was lost): ours if the token is.
                if _token_at(client, bucket, key, retry) == token:
                    return {}
            if status == 412:
                raise StorageError(
                    f"{key} already exists in bucket {bucket}: another writer stored it while "
                    f"this backup ran; a stored backup is never overwritten"
                ) from None
            raise

    return with_retries(f"completing the upload of {key}", finish, retry)


def delete_if_ours(client, bucket: str, key: str, token: str, *, retry: RetryPolicy) -> bool:
    """Delete the object under `key` when it carries `token`; True when it did. StorageError on failure."""
    if _token_at(client, bucket, key, retry) != token:
        log.error("%s is not this upload's object (another writer's, or gone): left as it is", key)
        return False
    with_retries(f"deleting the unverified {key}", lambda: client.delete_object(Bucket=bucket, Key=key), retry)
    return True
