"""A stored object read as a stream (for `verify s3://…` and `restore s3://…`): no temp file.

A transient error mid-read (dropped connection, timeout) resumes with a ranged GET from the byte
reached, pinned to the same object version by its ETag, so a long restore survives a hiccup.
"""

from __future__ import annotations

import io

from .client import RetryPolicy, StorageError, describe, is_transient, with_retries
from .companion import with_companion


class ObjectStream(io.RawIOBase):
    """A read-only file object over one S3 object; `size`, `etag`, `metadata` describe it."""

    def __init__(self, client, bucket: str, key: str, retry: RetryPolicy = RetryPolicy()):
        super().__init__()
        self.client, self.bucket, self.key, self.retry = client, bucket, key, retry
        self.name = f"s3://{bucket}/{key}"
        self.position = 0
        self._body = None
        self._resumes = 0
        response = self._get()
        self.size: int = response["ContentLength"]
        self.etag: str = response["ETag"]
        # the sha256 and final metadata of a backup recorded beside it (companion.py), old objects as they are
        self.metadata: dict[str, str] = with_companion(
            client, bucket, key, response.get("Metadata", {}), etag=self.etag, size=self.size, retry=retry
        )

    def _get(self):
        request = {"Bucket": self.bucket, "Key": self.key}
        if self.position:
            request.update(Range=f"bytes={self.position}-", IfMatch=self.etag)
        response = with_retries(f"reading {self.name}", lambda: self.client.get_object(**request), self.retry)
        self._body = response["Body"]
        return response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            try:
                data = self._body.read(len(buffer))
                if not data and self.position < self.size:
                    raise ConnectionError(f"the stream ended after {self.position} of {self.size} bytes")
                break
            except Exception as exc:
                if not is_transient(exc) and not isinstance(exc, OSError):
                    raise StorageError(f"reading {self.name} failed: {describe(exc)}") from exc
                self._resumes += 1
                if self._resumes >= self.retry.attempts:
                    raise StorageError(f"reading {self.name} failed {self._resumes} times: {describe(exc)}") from exc
                self._close_body()
                self._get()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:
                pass
            self._body = None

    def close(self) -> None:
        self._close_body()
        super().close()


def open_object(client, bucket: str, key: str, retry: RetryPolicy = RetryPolicy()) -> ObjectStream:
    """Open `s3://bucket/key` for reading; StorageError (e.g. NoSuchKey) when it cannot be read."""
    return ObjectStream(client, bucket, key, retry)
