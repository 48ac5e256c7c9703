"""A part's bytes as a file the HTTP client reads in small pieces — why a slow link can still send it.

Given bytes, the HTTP stack (urllib3 under botocore) sends a whole 16 MiB part with one `sendall`,
and the socket's timeout during sending is the *connect* timeout: a part then had to be out within
10 s (≥ 1.6 MB/s), so a slow bucket failed every multi-part backup. Given a file, it reads and sends
16 KiB at a time, each under that timeout: the timeout becomes a progress deadline — the link may be
as slow as it likes as long as some bytes move every SEND_STALL_S (the parts' client has that as its
connect timeout: client.make_part_client) — and no copy of the part is made.
"""

from __future__ import annotations

import io


class PartBody(io.RawIOBase):
    """Read-only, seekable view of a buffer (botocore seeks back to the start to retry a request)."""

    def __init__(self, data: bytes | bytearray):
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = min(max(base + offset, 0), len(self._view))
        return self._position

    def readinto(self, buffer) -> int:
        piece = self._view[self._position : self._position + len(buffer)]
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._position + size, len(self._view))
        piece = bytes(self._view[self._position : end])
        self._position = end
        return piece

    def close(self) -> None:
        # botocore closes request bodies; the buffer stays usable for a retry (a new PartBody).
        super().close()
