"""A network link that can stall: a TCP proxy on loopback whose link freezes and thaws, or passes bytes
at a set rate (a slow link to a bucket)."""

from __future__ import annotations


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port` whose link can be frozen and thawed.

    Frozen, it stops forwarding in both directions without closing anything (no FIN, no RST): bytes
    pile up in the kernel's buffers as on a link that went silent (a dead NAT entry, a partition).
    New connections are accepted but not forwarded either. Every thread polls at most every 0.1 s
    and `close()` ends them all, so the proxy never outlives its test.
    With `rate`, what clients send is passed on at that many bytes per second (a slow link to a
    bucket); the proxy's receive buffers are kept small so that the sender feels the rate.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, rate: int | None = None):
        import socket
        import threading

        self.target = (target_host, target_port)
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        if rate:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self._pass_left: int | None = None  # see freeze_after
        self._closed = threading.Event()
        self._sockets: list = []
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="proxy-accept")]
        self._threads[0].start()

    @property
    def endpoint(self) -> str:
        """The proxy as an HTTP endpoint (for an S3 server behind it)."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, cluster, dbname: str, *, with_password: bool = True) -> str:
        """`cluster.url(dbname)` through this proxy."""
        return cluster.url(dbname, with_password=with_password).replace(f":{cluster.port}/", f":{self.port}/")

    def freeze(self) -> None:
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self._pass_left = None

    def freeze_after(self, connections: int) -> None:
        """Let the next `connections` new connections through; freeze every later one from its start."""
        self._pass_left = connections

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            stuck = threading.Event()
            if self._pass_left is not None:
                if self._pass_left > 0:
                    self._pass_left -= 1
                else:
                    stuck.set()
            if self.rate:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            for source, sink, rate in ((client, upstream, self.rate), (upstream, client, None)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, stuck, rate), daemon=True, name="proxy-pump"
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source, sink, stuck, rate: int | None = None) -> None:
        import select
        import time

        while not self._closed.is_set():
            if self.frozen.is_set() or stuck.is_set():
                self._closed.wait(0.1)
                continue
            try:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                data = source.recv(4096 if rate else 65536)
                if not data:
                    break
                while self.frozen.is_set() and not self._closed.is_set():  # read just as the link froze
                    self._closed.wait(0.1)
                sink.sendall(data)  # a close() shuts the socket down, which ends a blocked send
                if rate:
                    time.sleep(len(data) / rate)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def close(self) -> None:
        self._closed.set()
        for sock in self._sockets:
            try:
                sock.shutdown(2)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in [self.listener, *self._sockets]:
            sock.close()
