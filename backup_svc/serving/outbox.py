"""Writing a response without waiting on the client: what the socket will not take now is kept to send later.

A request thread that writes to a client which does not read blocks until it does — or forever:
eight connections that pipeline requests for a static file and never read held all eight threads,
and `/healthz` went unanswered for as long as they liked. A thread writes through a
`WriteBehindSocket` instead: bytes go to the socket as far as it takes them without blocking, and
the rest (at most OUTBOX_MAX_BYTES per response) is kept for the worker's event loop to send when
the client reads (`SendsLater`, mixed into worker.py's GuardedWorker), under a deadline. Only a
response bigger than that — an authenticated download — makes its thread wait on the client, as it
must: a stream is produced as it is sent, and a download already ends on a stalled client
(BACKUP_STALL_TIMEOUT, cancel).
"""

from __future__ import annotations

import selectors
import socket
import time
from functools import partial

# A whole small response fits: health, JSON, error pages, the static files (17 KB at most), the
# dashboard. At WORKER_CONNECTIONS (1000) connections that is 64 MiB in the very worst case.
OUTBOX_MAX_BYTES = 64 * 1024
# What the loop sends for a response must make progress this often, and be sent within SEND_TIMEOUT_S,
# or its connection is closed: a client that does not read holds no thread, and not for long a socket.
SEND_STALL_S = 10.0
SEND_TIMEOUT_S = 60.0


class WriteBehindSocket:
    """A connection's socket as a request thread sees it: `sendall` never waits while the bytes not
    yet sent fit in OUTBOX_MAX_BYTES; everything else is the real socket's (`gunicorn.socket`)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.unsent = bytearray()

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def sendall(self, data) -> None:
        """Send what the socket takes now; keep the rest, or wait for the client when too much is kept."""
        data = memoryview(data).cast("B")
        if not self.unsent:
            try:
                data = data[self.sock.send(data, socket.MSG_DONTWAIT) :] if data else data
            except (BlockingIOError, InterruptedError):
                pass
        if not data:
            return
        if len(self.unsent) + len(data) <= OUTBOX_MAX_BYTES:
            self.unsent += data
            return
        # A large response (an authenticated download): its thread waits on the client, in order.
        self.sock.sendall(self.take())
        self.sock.sendall(data)

    def send(self, data, flags: int = 0) -> int:
        """`sendall`, counted: what gunicorn's own send paths expect."""
        self.sendall(data)
        return len(data)

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        """Read the file and `sendall` it, so a static file is kept behind like any other body."""
        file.seek(offset)
        sent = 0
        while count is None or sent < count:
            block = file.read(min(64 * 1024, count - sent) if count is not None else 64 * 1024)
            if not block:
                break
            self.sendall(block)
            sent += len(block)
        return sent

    def take(self) -> bytes:
        """The bytes kept so far, and keep none."""
        unsent, self.unsent = bytes(self.unsent), bytearray()
        return unsent


class SendsLater:
    """For gunicorn's gthread worker: a response's bytes its thread left unsent (`conn.unsent`, set by
    the thread from its WriteBehindSocket) are sent by the event loop before the connection goes on —
    to its next request, read in the loop, or to being closed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sending: dict = {}  # connection -> when it is closed unless the client reads on

    def finish_request(self, conn, fs):
        """A thread is done with `conn`: send what its response left unsent first, then go on as gthread."""
        unsent = conn.__dict__.pop("unsent", b"")
        if not unsent or fs.cancelled() or fs.exception() is not None:
            super().finish_request(conn, fs)
            return
        conn.unsent, conn.finished = memoryview(unsent), fs
        conn.send_until = time.monotonic() + SEND_TIMEOUT_S
        self.sending[conn] = time.monotonic() + SEND_STALL_S
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
        except (OSError, ValueError, KeyError):
            self.sending.pop(conn, None)
            self.nr_conns -= 1
            conn.close()

    def _on_writable(self, conn, _sock) -> None:
        try:
            sent = conn.sock.send(conn.unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._stop_sending(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.unsent = conn.unsent[sent:]
        if conn.unsent:
            self.sending[conn] = min(conn.send_until, time.monotonic() + SEND_STALL_S)
            return
        finished = conn.finished
        self._stop_sending(conn)
        super().finish_request(conn, finished)  # keep-alive (the next request, read here) or close

    def _stop_sending(self, conn) -> None:
        self.sending.pop(conn, None)
        conn.__dict__.pop("unsent", None)
        conn.__dict__.pop("finished", None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def murder_sending(self, now: float) -> None:
        """Close the connections whose client did not read its response in time."""
        for conn in [conn for conn, deadline in self.sending.items() if deadline <= now]:
            self._stop_sending(conn)
            self.nr_conns -= 1
            conn.close()  # not gracefully: the client did not read what it asked for
