"""Hundreds of slow clients on loopback, against the real gunicorn: the service must stay available.

The attack of issue 12: connections that send a request head (or a body) one byte at a time, and
connections that send nothing, from ten loopback addresses (127.0.1.1-10, 50 connections each). Bounded: ATTACKERS connections for ATTACK_S seconds, 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
import time

from backup_svc.serving.worker import HEAD_TIMEOUT_S
from tests.http_client import gzip_is_valid

ATTACK_S = HEAD_TIMEOUT_S + 4
ATTACKERS = {
    # kind: (connections, what is sent at once, what is then sent every DRIP_S)
    "slow head": (300, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),
    "slow small body": (50, b"POST /api/v1/backup HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n", b"b"),
    "slow large body": (50, b"POST /api/v1/backup HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", b"b"),
    "silent": (100, b"", b""),
}
DRIP_S = 1.0


class Attack:
    """Opens the attackers' connections and drips their bytes from one thread; notes when each is closed."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: list[tuple[str, socket.socket]] = []
        self.closed_after: dict[str, list[float]] = {kind: [] for kind in ATTACKERS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Attack":
        for kind, (count, first, _) in ATTACKERS.items():
            for _ in range(count):
                # Many clients: one holds at most 100 connections (serving/clientcap.py), so 50 per address.
                source = (f"127.0.1.{len(self.sockets) // 50 + 1}", 0)
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=source)
                sock.setblocking(False)
                if first:
                    sock.send(first)
                self.sockets.append((kind, sock))
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        alive = list(self.sockets)
        while alive and not self._stop.wait(DRIP_S):
            still = []
            for kind, sock in alive:
                try:
                    sock.recv(65536)  # the server answers these only to refuse them, then closes
                    raise ConnectionResetError
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    self.closed_after[kind].append(time.monotonic() - self.started)
                    sock.close()
                    continue
                try:
                    if ATTACKERS[kind][2]:
                        sock.send(ATTACKERS[kind][2])
                    still.append((kind, sock))
                except OSError:
                    self.closed_after[kind].append(time.monotonic() - self.started)
                    sock.close()
            alive = still

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for _, sock in self.sockets:
            sock.close()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_slow_clients_do_not_stop_health_checks_the_dashboard_or_a_download(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db)
    worker = service.worker_pids()[0]
    assert service.request("GET", "/", service.auth()).status == 200  # warm: the page is rendered once
    rss_before = _rss_kib(worker)

    attack = Attack(service.port).start()
    try:
        latencies, pages, downloads = [], [], []
        while time.monotonic() - attack.started < ATTACK_S:
            begun = time.monotonic()
            assert service.request("GET", "/healthz").status == 200
            latencies.append(time.monotonic() - begun)
            if len(latencies) % 10 == 0:
                pages.append(service.request("GET", "/", service.auth()).status)
                reply = service.request("GET", "/api/v1/backup", service.auth())
                downloads.append(reply.status == 200 and reply.complete and gzip_is_valid(reply.body))
            time.sleep(0.2)
        rss_during = _rss_kib(worker)
    finally:
        attack.stop()

    assert max(latencies) < 2.0, f"slowest /healthz took {max(latencies):.2f} s"
    assert pages and set(pages) == {200}
    assert downloads and all(downloads)
    # Slow requests are cut once their deadline passes (checked once a second, dripped once a second).
    for kind in ("slow head", "slow small body", "silent"):
        count = ATTACKERS[kind][0]
        assert len(attack.closed_after[kind]) == count, (kind, len(attack.closed_after[kind]))
        assert max(attack.closed_after[kind]) < HEAD_TIMEOUT_S + 3
    # A large body is never waited for: the request is answered at once and its connection closed.
    assert len(attack.closed_after["slow large body"]) == ATTACKERS["slow large body"][0]
    assert max(attack.closed_after["slow large body"]) < 3
    assert rss_during - rss_before < 48 * 1024, f"the worker grew by {(rss_during - rss_before) // 1024} MiB"
    print(
        f"healthz: {len(latencies)} requests, slowest {max(latencies) * 1000:.0f} ms; "
        f"worker RSS +{(rss_during - rss_before) // 1024} MiB; closed after (s): "
        + ", ".join(f"{k}: {max(v):.1f}" for k, v in attack.closed_after.items() if v)
    )
