"""At most MAX_CONNECTIONS_PER_CLIENT connections open at once from one client, when clients connect directly.

The worker holds WORKER_CONNECTIONS connections at once; past that, new ones wait in the kernel's
queue. One address that opens 1,100 connections and never reads therefore took the service down
by itself (measured: `/healthz` unanswered throughout), however cheaply each is held. With
TRUSTED_PROXY_HOPS=0 the peer is the client, and a cap per client (an IPv6 /64 counts as one, as
for the throttle) leaves room for everyone else; a connection over it is answered 503 and closed
before anything is read. Behind a proxy every connection comes from the proxy, so there is no cap
here: the proxy's own limits apply.
"""

from __future__ import annotations

import errno
import socket
from collections import Counter

from gunicorn.workers.gthread import TConn

from backup_svc.clientaddress import address_key, normalise_address

MAX_CONNECTIONS_PER_CLIENT = 100
_BUSY_REPLY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 10\r\nContent-Length: 0\r\n\r\n"


def peer_key(client) -> str:
    """The client a peer address belongs to (an IPv6 peer's /64)."""
    host = client[0] if isinstance(client, tuple) else str(client)
    return address_key(normalise_address(host))


class CapsConnectionsPerClient:
    """For gunicorn's gthread worker: `accept` counts connections per client and refuses those over the cap.

    `capped` is decided at start (`self.app.settings`: no cap behind a trusted proxy); each
    connection is counted until `release_client(conn)` — called once, when it is closed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_client: Counter = Counter()
        settings = getattr(self.app, "settings", None)
        self.capped = settings is not None and settings.trusted_proxy_hops == 0

    def accept(self, listener):
        """gthread's accept, with the count and the cap."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        key = peer_key(client_addr)
        if self.capped and self.per_client[key] >= MAX_CONNECTIONS_PER_CLIENT:
            try:
                client_sock.send(_BUSY_REPLY, socket.MSG_DONTWAIT)
            except OSError:
                pass
            client_sock.close()
            return
        self.per_client[key] += 1
        self.nr_conns += 1
        client_sock.setblocking(True)
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.client_key = key
        self.enqueue_req(conn)

    def release_client(self, conn) -> None:
        """`conn` is closed: it no longer counts towards its client's connections."""
        key = conn.__dict__.pop("client_key", None)
        if key is not None:
            self.per_client[key] -= 1
            if self.per_client[key] <= 0:
                del self.per_client[key]
