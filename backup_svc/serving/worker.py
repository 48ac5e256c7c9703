"""gunicorn's gthread worker, made to survive slow and malformed clients.

gthread hands every connection to a request thread, which then reads the request head (and a body
it drains) with no overall deadline: a few connections that send one header byte every few seconds
hold all WEB_THREADS threads, and `/healthz`, the dashboard and downloads wait behind them.

`GuardedWorker` reads each request's head — and a small body — in the worker's event loop instead,
without a thread, and gives the request to a thread only once it has fully arrived. A request must
arrive within HEAD_TIMEOUT_S of its first byte or its connection is closed (408). Whether it has arrived —
how long its body is — is decided by gunicorn's own parser (arrival.py), so the two never disagree.

Nor do threads wait on a client that is slow to read: a response is written through a
`WriteBehindSocket` (outbox.py), which keeps what the socket will not take at once; the event loop
sends it when the client reads, and closes the connection if it has not read it within
SEND_STALL_S (SEND_TIMEOUT_S at most; outbox.py). The connection's next request — pipelined behind — is not
read before the response ahead of it is sent. Only a response larger than OUTBOX_MAX_BYTES (an
authenticated download) keeps its thread while the client reads.

One client (when clients connect directly) holds at most MAX_CONNECTIONS_PER_CLIENT connections
(clientcap.py), so that it cannot take all WORKER_CONNECTIONS.

Closing a connection gracefully (FIN, then reading what the client still sends) is also moved out
of the way: gthread did it inside its event loop, blocking it up to 2 s per connection.

Memory: at most MAX_HEAD_BYTES + MAX_BUFFERED_BODY (48 KiB) per connection being read, or
OUTBOX_MAX_BYTES (64 KiB) being sent, and at most WORKER_CONNECTIONS connections: about 64 MiB in
the very worst case, a few KiB per connection in practice. Nothing touches the disk.

It also keeps secrets out of gunicorn's own error handling: a malformed request line (a control
byte, say) used to be logged and echoed in the 400 page in full, query string — and any signed
link's signature — included.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import OrderedDict
from concurrent import futures
from functools import partial

from gunicorn import util
from gunicorn.http.errors import InvalidResponseHeader, InvalidResponseHeaderName, ParseException
from gunicorn.workers.gthread import ThreadWorker

from backup_svc.serving.arrival import Arrival, request_arrival
from backup_svc.serving.clientcap import CapsConnectionsPerClient
from backup_svc.serving.outbox import SendsLater, WriteBehindSocket

# A request's head (and small body) must be complete this long after its first byte arrived.
HEAD_TIMEOUT_S = 10.0
# gunicorn's own limits (request line 8190, a field 16384) fit with room to spare; anything bigger
# is refused (431) before it can be buffered.
MAX_HEAD_BYTES = 32 * 1024
# gunicorn's default, stated: connections open at once (reading, waiting for a thread, streaming).
WORKER_CONNECTIONS = 1000
# When the worker stops, a request still arriving gets this long (gthread keeps kept-alive ones as long).
STOP_LINGER_S = 2.0
READ_SIZE = 16 * 1024
# A graceful close reads what the client still sends for this long, at most MAX_DRAIN bytes (as
# gunicorn's close_graceful), with at most MAX_LINGERING sockets lingering at once.
LINGER_S = 2.0
MAX_DRAIN = 64 * 1024
MAX_LINGERING = 256

_TIMEOUT_REPLY = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_LARGE_REPLY = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
# What gunicorn logs and echoes for a malformed request instead of the request line or header.
_NOT_SHOWN = "not shown: it may hold a credential"


class GuardedWorker(CapsConnectionsPerClient, SendsLater, ThreadWorker):
    """gthread with requests read and slow responses sent by the event loop under deadlines, a cap on
    connections per client, and quiet client errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arriving: OrderedDict = OrderedDict()  # connection -> deadline, oldest first
        self.lingering: OrderedDict = OrderedDict()  # closed for writing, draining: connection -> deadline

    # -- reading requests without a thread ------------------------------------------------------
    def enqueue_req(self, conn):
        """Give `conn` to a thread once its next request has arrived; until then, read it here."""
        if conn.__dict__.pop("request_ready", False):
            super().enqueue_req(conn)
            return
        if "close" not in conn.__dict__:
            conn.close = partial(self._close, conn)  # gthread's graceful close would block the loop
        # Bytes the previous request's parser read ahead (a pipelined request) come first.
        conn.arrived = bytearray(conn.parser.unreader.take_buffered() if conn.parser is not None else b"")
        if self._advance(conn):
            return
        conn.sock.setblocking(False)
        self.arriving[conn] = time.monotonic() + (HEAD_TIMEOUT_S if self.alive else STOP_LINGER_S)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _sock) -> None:
        data = _receive(conn.sock)
        if data is None:
            return
        if not data:
            self._drop(conn)
            return
        conn.arrived += data
        self._advance(conn)

    def _advance(self, conn) -> bool:
        """Hand `conn` to a thread if its request is all here, refuse it if too large; True if either."""
        needed = conn.__dict__.get("needed")
        if needed is not None:  # the head was parsed: only the body's bytes are counted now
            arrival = Arrival(complete=len(conn.arrived) >= needed)
        else:
            arrival = request_arrival(conn.arrived, self.cfg, conn.client)
            conn.needed = arrival.needed
        if arrival.complete:
            if self.arriving.pop(conn, None) is not None:
                self.poller.unregister(conn.sock)
            conn.__dict__.pop("needed", None)
            conn.body_left = arrival.body_left
            conn.request_ready = True
            conn.data_ready = True  # gthread must not wait for more data in the thread
            self.enqueue_req(conn)
            return True
        if len(conn.arrived) > MAX_HEAD_BYTES:
            self._drop(conn, _TOO_LARGE_REPLY)
            return True
        return False

    def _drop(self, conn, reply: bytes = b"") -> None:
        if self.arriving.pop(conn, None) is not None:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        if reply:
            try:
                conn.sock.send(reply)  # best effort: the socket does not block
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def handle_exit(self, sig, frame):
        """SIGTERM: stop serving (gunicorn), and tell the application, which stops its stored backup."""
        super().handle_exit(sig, frame)
        begin = getattr(self.app, "begin_shutdown", None)
        if begin is not None:
            begin()

    def get_thread_pool(self):
        return _Pool(max_workers=self.cfg.threads)

    def handle_quit(self, sig, frame):
        """SIGQUIT/SIGINT (Ctrl-C): gunicorn's worker shuts its thread pool down and exits, from inside the
        signal handler. The handler runs in this (the main) thread; when the signal lands while this
        thread is in the pool's `submit` (a request just arrived), that deadlocks — `submit` holds the
        pool's lock while it starts a thread, and `shutdown` waits for it — or, exiting from inside the
        thread's start, leaves a pool thread Python then waits for at exit. Either way the worker hung
        until the arbiter gave up: a Ctrl-C right after a request took 30 s. Then the worker stops as
        on SIGTERM instead, once `submit` has returned: the loop ends and the pool is shut down outside
        the handler."""
        if self.tpool.submitting:
            self.handle_exit(sig, frame)
            return
        super().handle_quit(sig, frame)

    def murder_pending(self):
        """Close connections whose request did not arrive in time, and lingering ones past their time."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving:
            conn, deadline = next(iter(self.arriving.items()))
            if deadline > now:
                break
            self._drop(conn, _TIMEOUT_REPLY)
        while self.lingering and next(iter(self.lingering.values())) <= now:
            self._end_linger(next(iter(self.lingering)))
        self.murder_sending(now)

    # -- closing without blocking the loop ------------------------------------------------------
    def _close(self, conn, graceful: bool = False) -> None:
        """Close `conn`; gracefully (RFC 9112 9.6) means: send FIN, then read what the client still
        sends for up to LINGER_S, so its last response is not cut by a reset.

        gthread lingers inside its event loop, up to 2 s per connection: fifty clients that keep
        their side open stalled every other request for 100 s. Here the linger is one more socket
        the loop watches, at most MAX_LINGERING of them.
        """
        self.release_client(conn)
        if not graceful:
            util.close(conn.sock)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        conn.drained = 0
        self.lingering[conn] = time.monotonic() + LINGER_S
        while len(self.lingering) > MAX_LINGERING:
            self._end_linger(next(iter(self.lingering)))

    def _on_lingering_readable(self, conn, _sock) -> None:
        data = _receive(conn.sock)
        if data is None:
            return
        conn.drained += len(data)
        if not data or conn.drained > MAX_DRAIN:
            self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(conn.sock)

    def _cap_keepalive(self, deadline):
        """On stop: requests still arriving get STOP_LINGER_S, like gthread's kept-alive connections."""
        super()._cap_keepalive(deadline)
        for conn in self.arriving:
            self.arriving[conn] = min(self.arriving[conn], deadline)

    def handle(self, conn):
        """In the thread: put the bytes read so far in front of the parser, then let gthread go on,
        writing through a WriteBehindSocket; what it could not send at once is left for the loop."""
        arrived = conn.__dict__.pop("arrived", None)
        if arrived is not None:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(arrived))
        real = conn.sock
        conn.sock = outbox = WriteBehindSocket(real)
        try:
            return super().handle(conn)
        finally:
            conn.sock = real
            conn.unsent = outbox.take()

    def _keepalive_after(self, conn, keepalive):
        # A body that was not read in advance may be dribbling in: close rather than drain it.
        if conn.__dict__.pop("body_left", False):
            return False
        return super()._keepalive_after(conn, keepalive)

    # -- errors without secrets -----------------------------------------------------------------
    def handle_error(self, req, client, addr, exc):
        """gunicorn's error handling, minus the request line, URI and header values it would log and echo."""
        if req is not None and getattr(req, "path", None) is not None:
            req.uri = req.path  # logged for server errors; the query string may carry a signed link
        if isinstance(exc, ParseException) and not isinstance(exc, (InvalidResponseHeader, InvalidResponseHeaderName)):
            exc = _quiet(exc)
        super().handle_error(req, client, addr, exc)


_QUIET_CLASSES: dict[type, type] = {}


class _Pool(futures.ThreadPoolExecutor):
    """The worker's thread pool, which says when its `submit` is running (GuardedWorker.handle_quit)."""

    submitting = False

    def submit(self, *args, **kwargs):
        self.submitting = True
        try:
            return super().submit(*args, **kwargs)
        finally:
            self.submitting = False


def _quiet(exc: Exception) -> Exception:
    """A copy of `exc` (same class, so gunicorn picks the same status) whose text shows nothing sent."""
    cls = type(exc)
    quiet_cls = _QUIET_CLASSES.get(cls)
    if quiet_cls is None:
        quiet_cls = _QUIET_CLASSES[cls] = type(cls.__name__, (cls,), {"__str__": lambda self: _NOT_SHOWN})
    quiet = quiet_cls.__new__(quiet_cls)
    quiet.__dict__.update(exc.__dict__)
    quiet.args = ()
    return quiet


def _receive(sock: socket.socket) -> bytes | None:
    """Up to READ_SIZE bytes from a non-blocking socket: b"" when it is closed or broken, None when
    nothing is there yet."""
    try:
        return sock.recv(READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
