"""HTTP from a test's side: credential headers, a response read whole or seen to break, a read with a
deadline, and whether what arrived is one complete gzip stream."""

from __future__ import annotations

import gzip
import http.client
import threading
import time
import zlib
from base64 import b64encode


def basic(user: str, password: str) -> dict[str, str]:
    """An `Authorization: Basic` header."""
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    """An `Authorization: Bearer` header."""
    return {"Authorization": f"Bearer {token}"}


class Reply:
    """Status, headers and body of one response; `complete` is False when the transfer broke."""

    def __init__(self, status: int, headers, body: bytes, complete: bool):
        self.status, self.headers, self.body, self.complete = status, headers, body, complete

    def json(self):
        import json

        return json.loads(self.body)


def read_all(resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """The body and whether it arrived whole (chunked terminator seen)."""
    parts = []
    try:
        while True:
            chunk = resp.read(65536)
            if not chunk:
                return b"".join(parts), True
            parts.append(chunk)
    except (http.client.IncompleteRead, ConnectionError, OSError) as exc:
        if isinstance(exc, http.client.IncompleteRead):
            parts.append(exc.partial)
        return b"".join(parts), False


def read_within(resp, conn, seconds: float) -> tuple[bytes, bool]:
    """`read_all(resp)`, failing the test (and closing the connection) if it takes over `seconds`."""
    result: list = []
    reader = threading.Thread(target=lambda: result.append(read_all(resp)), daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        conn.sock.shutdown(2)
        reader.join(5)
        raise AssertionError(f"the response was still streaming {seconds} s later")
    return result[0]


def gzip_is_valid(data: bytes) -> bool:
    """True when `data` is one complete gzip stream (what `gzip -t` accepts)."""
    try:
        gzip.decompress(data)
        return True
    except (OSError, EOFError, zlib.error):
        return False


def timed(call):
    """`call()` and the seconds it took."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
