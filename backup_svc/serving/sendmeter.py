"""How much of a download the client has really received: the bytes its TCP has acknowledged.

A chunk the server has written is not yet with the client: it sits in the kernel's send buffer (megabytes,
with Linux's autotuning) until the client's TCP acknowledges it. Progress, rate and "sent all" are
measured on acknowledged bytes: Linux's `TCP_INFO` counts them for the connection (`tcpi_bytes_acked`,
Linux 4.1+; the response's headers and chunk framing, a kilobyte or two, count too, so the figure is
capped at the body bytes handed to the server). Older kernels: the bytes written minus `SIOCOUTQ`
(exact between chunks, low while a write is blocked). Where the socket cannot be asked (another
server, another OS) the written bytes are the best the service knows.
"""

from __future__ import annotations

import collections
import fcntl
import socket
import struct
import threading
import time

# Offset of the 64-bit tcpi_bytes_acked in Linux's struct tcp_info, and the length that includes it.
TCP_INFO_BYTES_ACKED = 120
TCP_INFO_LENGTH = 128
# ioctl(2) number of SIOCOUTQ (= TIOCOUTQ) on Linux: bytes in the send queue the peer has not acknowledged.
SIOCOUTQ = 0x5411
# The rate (and so the time left) is measured over this recent window, not since the start.
RATE_WINDOW_S = 5.0
# Samples kept for the rate: a poll or a chunk at most every few hundred ms is plenty.
MAX_SAMPLES = 64
# After the last chunk, how long to wait for the client to acknowledge it when nothing moves.
DRAIN_STALL_S = 30.0
DRAIN_POLL_S = 0.02
# TCP states (tcp_states.h) in which written bytes can still reach the client: ESTABLISHED, and
# CLOSE_WAIT (the client closed its sending side, as HTTP clients may, and still reads).
TCP_STATES_DELIVERING = (1, 8)


class SendMeter:
    """Bytes of one response written to its socket and acknowledged by the client; thread-safe.

    The streaming thread calls `wrote()` after each chunk and `drain()` after the last; pollers call
    `delivered()` and `rate()`. `close()` (when the response closes) stops any look at the socket,
    whose file descriptor the server may reuse afterwards.
    """

    def __init__(self, sock: socket.socket | None):
        self._sock = sock
        self._lock = threading.Lock()
        self._written = 0
        self._handed = 0  # handed to the server's write, which may not have returned yet
        self._closed = False
        self._baseline = self._acknowledged()  # a kept-alive connection counts earlier responses too
        self.first_at: float | None = None  # when the first byte was written
        self.delivered_at: float | None = None  # when the client had acknowledged every byte written
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=MAX_SAMPLES)

    @property
    def written(self) -> int:
        return self._written

    def handing(self, size: int) -> None:
        """`size` more bytes are being handed to the server to write."""
        with self._lock:
            self._handed += size

    def _acknowledged(self) -> int | None:
        """The connection's tcpi_bytes_acked, or None where it cannot be read."""
        if self._sock is None or self._closed:
            return None
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LENGTH)
        except (OSError, ValueError):
            return None
        if len(info) < TCP_INFO_LENGTH:
            return None
        return struct.unpack_from("Q", info, TCP_INFO_BYTES_ACKED)[0]

    def wrote(self, size: int) -> None:
        """`size` more bytes were handed to the socket (the server's write returned)."""
        with self._lock:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self._written += size

    def _unacknowledged(self) -> int:
        """Bytes written but not yet acknowledged by the client; hold the lock."""
        if self._sock is None or self._closed:
            return 0
        try:
            fd = self._sock.fileno()
            if fd < 0:
                return 0
            return struct.unpack("i", fcntl.ioctl(fd, SIOCOUTQ, b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            return 0

    def delivered(self, now: float | None = None) -> int:
        """Bytes the client has acknowledged (recorded as a sample for the rate)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            acked = self._acknowledged() if self._baseline is not None else None
            if acked is not None:
                value = min(acked - self._baseline, max(self._handed, self._written))
            else:
                value = self._written - min(self._unacknowledged(), self._written)
            if not self._samples or now - self._samples[-1][0] >= 0.1:
                self._samples.append((now, value))
            return value

    def rate(self, now: float | None = None) -> float | None:
        """Bytes per second delivered over the last RATE_WINDOW_S (None until there are two samples)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [s for s in self._samples if now - s[0] <= RATE_WINDOW_S] or list(self._samples)[-2:]
        if len(recent) < 2 or recent[-1][0] - recent[0][0] < 0.2:
            return None
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])

    def send_seconds(self) -> float | None:
        """From the first byte written to the last one acknowledged (None until delivered)."""
        if self.first_at is None or self.delivered_at is None:
            return None
        return max(self.delivered_at - self.first_at, 0.0)

    def _connected(self) -> bool:
        """Whether the connection can still deliver: a reset one keeps its unacknowledged count for ever."""
        if self._sock is None:
            return True
        try:
            state = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except (OSError, ValueError, IndexError):
            return True  # cannot tell (not TCP, not Linux): the stall limit still applies
        return state in TCP_STATES_DELIVERING

    def drain(self, stall_s: float = DRAIN_STALL_S) -> bool:
        """Wait until the client has acknowledged every byte written.

        False when the connection broke (the client went away) or nothing moved for `stall_s`.
        """
        last, moved_at = -1, time.monotonic()
        while True:
            now = time.monotonic()
            got = self.delivered(now)
            if got >= self._written:
                self.delivered_at = now
                return True
            if not self._connected():
                return False
            if got != last:
                last, moved_at = got, now
            elif now - moved_at > stall_s:
                return False
            time.sleep(DRAIN_POLL_S)

    def close(self) -> None:
        """The response is closed: never look at its socket again."""
        with self._lock:
            self._closed = True
