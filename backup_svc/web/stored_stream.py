"""A stored backup streamed through the service: the download of a backup on an rclone remote, which has no
presigned links (`GET /api/v1/stored/<name>` redirects to the bucket instead for s3://).

The bytes come from `rclone cat` one 64 KiB chunk at a time (memory stays flat whatever the size; nothing
is written to disk). Headers are decided before the first byte: the length is the listed size, so a
transfer that breaks later (the remote failing) ends short and the client sees it incomplete.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from flask import Response

from backup_svc.crypto.common import is_encrypted_name
from backup_svc.web.download import UNSENT_BODY, content_disposition

log = logging.getLogger(__name__)


class StreamedStoredBackup:
    """The response body: the remote's bytes; on close (done, failed, abandoned by the client, never started
    for HEAD) the `rclone cat` child is killed and the download audited, once.

    A class rather than a generator: the server closes a body it never iterated (HEAD, an early disconnect),
    and a generator that was never started does not run its `finally` then.
    """

    def __init__(self, chunks: Iterator[bytes], size: int, audit: Callable[..., None]):
        self.chunks, self.size, self.audit = chunks, size, audit
        self.sent = 0
        self.error: str | None = None
        self._closed = False

    def __iter__(self):
        try:
            for chunk in self.chunks:
                yield chunk
                self.sent += len(chunk)
        except GeneratorExit:
            raise  # the client went away: close() records that
        except BaseException as exc:  # rclone failed mid-way: the transfer breaks (it ends short of its length)
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("streaming a stored backup broke after %d bytes: %s", self.sent, self.error)
            raise

    def abandon(self, reason: str) -> None:
        """Close the body as failed with `reason` (the response could not be started)."""
        if not self._closed:
            self.error = self.error or reason
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.chunks.close()  # kills `rclone cat` if it still runs (rclone_target.RcloneTarget.open)
        finally:
            if self.error is not None:
                outcome = "failed"
            elif self.sent == self.size:
                outcome = "ok"
            else:
                outcome, self.error = "aborted", f"the client went away after {self.sent} of {self.size} bytes"
            self.audit(outcome, 200, self.error, gzip_bytes=self.sent)


def streamed_response(
    name: str, size: int, chunks: Iterator[bytes], audit: Callable[..., None], environ: dict
) -> Response:
    """200 with the backup's bytes as an attachment named `name`, its length and no caching."""
    body = StreamedStoredBackup(chunks, size, audit)
    environ[UNSENT_BODY] = body  # closed with whatever response goes out, should this one fail to start
    mimetype = "application/octet-stream" if is_encrypted_name(name) else "application/gzip"
    return Response(
        body,
        status=200,
        mimetype=mimetype,
        direct_passthrough=True,
        headers={
            "Content-Disposition": content_disposition(name),
            "Content-Length": str(size),
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        },
    )
