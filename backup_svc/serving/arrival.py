"""Has a whole request arrived? Decided by gunicorn's own parser, so the worker and gunicorn never disagree.

The worker reads each request in its event loop and gives it to a thread only once it is all there
(worker.py). How long the body is — Content-Length with any number of digits, leading zeros or
blanks, Transfer-Encoding, a duplicate — is exactly what gunicorn's parser says when the thread
parses the same bytes, because it is gunicorn's parser: a pattern of our own once read
`Content-Length: 0000000000000100` as "no body", and gunicorn then held a thread for 5 s waiting
for the 100 bytes. A head gunicorn refuses is handed over at once, to be refused (400) by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

# Bodies up to this size are read before the request gets a thread; larger ones (nothing here takes
# one: the app refuses bodies over 64 KiB and no public view reads one) and chunked ones are handed
# over as they are, and their connection is closed after the response instead of drained.
MAX_BUFFERED_BODY = 16 * 1024


@dataclass(frozen=True)
class Arrival:
    """What the bytes read so far hold: `complete` — hand the request to a thread; `body_left` — its
    body was not waited for (close the connection after the response rather than drain it);
    `needed` — when only the body is missing, how many bytes the whole request has."""

    complete: bool
    body_left: bool = False
    needed: int | None = None


NOT_YET = Arrival(complete=False)
_END_OF_HEAD = b"\r\n\r\n"


def request_arrival(data: bytes, cfg, peer) -> Arrival:
    """Parse `data` (the start of a connection's next request) with gunicorn's parser under `cfg`.

    A head that is not complete yet is NOT_YET. A head gunicorn refuses is complete (the thread's
    parse raises the same error and answers 400 at once). A body is waited for only when its length
    is known and at most MAX_BUFFERED_BODY; a chunked one, a larger one, or one behind `Expect`
    (the client waits for the server) is not.
    """
    if _END_OF_HEAD not in data:
        return NOT_YET  # gunicorn reads up to here before it judges the head, and so do we
    unreader = IterUnreader([bytes(data)])
    try:
        request = Request(cfg, unreader, peer)
    except (NoMoreData, StopIteration):
        return NOT_YET
    except Exception:  # noqa: BLE001 — any refusal: gunicorn answers it in the thread, from these bytes
        return Arrival(complete=True, body_left=True)
    reader = request.body.reader if request.body is not None else None
    if isinstance(reader, ChunkedReader) or any(name == "EXPECT" for name, _ in request.headers):
        return Arrival(complete=True, body_left=True)
    length = reader.length if isinstance(reader, LengthReader) else 0
    if length > MAX_BUFFERED_BODY:
        return Arrival(complete=True, body_left=True)
    after_head = len(unreader.take_buffered())
    return Arrival(complete=after_head >= length, needed=len(data) - after_head + length)
