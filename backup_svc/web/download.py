"""A download's body: the dump streamed to the client, cleaned up once however it ends, and its headers.

`StreamingBackup` frees the slot and audits the attempt whether the dump completes, fails or the
client leaves; `CloseUnsentBodies` closes a body whose response never started.
"""

from __future__ import annotations

import logging
import unicodedata
from functools import partial
from urllib.parse import quote

from werkzeug.wsgi import ClosingIterator

from backup_svc.crypto.encrypt import EncryptedChunks
from backup_svc.dump.attempt import ABORTED, FAILED, DumpProgress
from backup_svc.dump.pipeline import DumpBroken, GzipDump
from backup_svc.dump.registry import BackupRecord
from backup_svc.dump.rowcount import total_rows
from backup_svc.web.state import BackupService

log = logging.getLogger(__name__)


class StreamingBackup:
    """The response body: yields the dump, and on close (done, failed or abandoned) cleans up once.

    A class rather than a generator because a generator that was never started does not run its
    `finally` when closed, and the server closes a body it never iterated (HEAD, early disconnect).
    Whatever fails — the dump, this code, the server — the slot is freed and the attempt audited.
    """

    def __init__(
        self, dump: GzipDump, record: BackupRecord, service: BackupService, facts: dict, recipients: tuple = ()
    ):
        self.dump = dump
        self.record = record
        self.service = service
        self.facts = facts  # client and user agent, read while the request was live
        # ?encrypt=age: the gzip stream goes through age on its way out (crypto.encrypt)
        self.chunks = EncryptedChunks(dump, recipients) if recipients else dump
        self._closed = False

    def __iter__(self):
        meter = self.record.meter
        try:
            for chunk in self.chunks:
                meter.handing(len(chunk))
                yield chunk
                meter.wrote(len(chunk))  # the server's write returned: the chunk is in the socket
            if isinstance(self.chunks, EncryptedChunks):
                self.record.progress.sha256 = self.chunks.sha256  # the file's (age), not the gzip's inside it
            # Every chunk is written; "done" waits until the client has acknowledged them all, since
            # the kernel's buffers hold megabytes the client may never get.
            if not meter.drain():
                _mark_aborted(self.record.progress, "the client stopped receiving before the last bytes reached it")
            # Free the slot now, not when the server gets round to closing the body, or the
            # client's next download could meet a 429 from this one.
            self.service.registry.end(self.record)
        except DumpBroken as exc:
            # Raising after the headers went out makes the server drop the connection without the
            # final chunk: the client sees a broken transfer, never a complete-looking file.
            log.error("backup %s broken mid-stream: %s", self.record.id, exc)
            raise
        except GeneratorExit:
            raise  # the server dropped the body (the client went away): close() records that
        except BaseException:
            log.exception("backup %s: unexpected error while streaming", self.record.id)
            _mark_failed(
                self.record.progress, "the service hit an unexpected error while streaming; it has been logged"
            )
            raise

    def abandon(self, reason: str) -> None:
        """Close the body as failed with `reason`, unless it is closed already (the server had it)."""
        if not self._closed:
            _mark_failed(self.record.progress, reason)
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.record.meter.close()
        try:
            if self.chunks is not self.dump:
                self.chunks.close()
            self.dump.close()
        except BaseException:
            log.exception("backup %s: stopping pg_dump failed", self.record.id)
            _mark_failed(self.record.progress, "the service hit an unexpected error while stopping the dump")
            raise
        finally:
            self.service.registry.end(self.record)
            progress = self.record.progress
            self.service.audit.record(
                actor=self.record.actor,
                outcome=progress.outcome or ABORTED,
                started=progress.started,
                backup_id=self.record.id,
                status=200,
                gzip_bytes=progress.gzip_bytes,
                sql_bytes=progress.sql_bytes,
                rows=total_rows(progress.table_rows) if progress.outcome == "ok" else None,
                error=progress.error,
                sha256=progress.sha256,
                **self.facts,
            )


def _mark_aborted(progress: DumpProgress, error: str) -> None:
    """The dump completed but the client never acknowledged its end: not a backup anyone has."""
    progress.end(ABORTED, error, overrule=True)
    progress.sha256 = None


def _mark_failed(progress: DumpProgress, error: str) -> None:
    """Record a failure of the service's own (not pg_dump's) unless the attempt already ended."""
    progress.end(FAILED, error)


# Where a view leaves its download body for CloseUnsentBodies. If the response fails before the server
# has the body (gunicorn refuses a header, a later step of Flask raises and an error page goes out
# instead), nothing else would ever close it, and its slot would stay taken.
UNSENT_BODY = "backup_svc.unsent_body"
UNSENT_REASON = "the response could not be started; it has been logged"


class CloseUnsentBodies:
    """WSGI middleware: a download body a view made is closed with the response, whichever response that is."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        try:
            result = self.wsgi_app(environ, start_response)
        except BaseException:
            self._abandon(environ)
            raise
        if UNSENT_BODY not in environ:
            return result
        # Usually the body itself is closing here already (then this does nothing).
        return ClosingIterator(result, partial(self._abandon, environ))

    @staticmethod
    def _abandon(environ) -> None:
        body = environ.pop(UNSENT_BODY, None)
        if body is not None:
            body.abandon(UNSENT_REASON)


def content_disposition(filename: str) -> str:
    """`attachment` with `filename` (RFC 6266): an ASCII name, and the UTF-8 one for names outside ASCII.

    Header values are bytes on the wire; gunicorn refuses characters outside Latin-1, and Latin-1
    ones (café) reach browsers as mojibake. Browsers that know `filename*` (all current ones) use it.
    """
    if filename.isascii():
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_filename(filename)}\"; filename*=UTF-8''{quote(filename, safe='')}"


def ascii_filename(filename: str) -> str:
    """`filename` with accents dropped (café → cafe) and other non-ASCII prefixes replaced by `database`."""
    prefix, sep, rest = filename.partition("_backup_")
    folded = unicodedata.normalize("NFKD", prefix).encode("ascii", "ignore").decode()
    folded = "".join(c for c in folded if c.isalnum() or c in "-_.").strip("-_.")
    return (folded or "database") + sep + rest.encode("ascii", "ignore").decode()


def download_headers(filename: str) -> dict[str, str]:
    return {
        "Content-Disposition": content_disposition(filename),
        "X-Accel-Buffering": "no",
    }
