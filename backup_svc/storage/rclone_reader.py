"""`verify rclone:<remote>:<path>/<name>` and `restore rclone:…`: the stored file as a read stream
(`rclone cat`, no temp file) and the sha256 its companion `<name>.sha256` records."""

from __future__ import annotations

import io
from typing import Iterator, Mapping

from .client import StorageError
from .rclone_target import RcloneTarget, parse_rclone_url


class IterStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks."""

    def __init__(self, name: str, chunks: Iterator[bytes]):
        super().__init__()
        self.name, self._chunks, self._pending = name, chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            self._pending = next(self._chunks, b"")
            if not self._pending:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # stops `rclone cat` if the reader gave up early
        super().close()


def split_file_url(url: str, env: Mapping[str, str]) -> tuple[RcloneTarget, str]:
    """`rclone:<remote>:<folder>/<name>` → (the target on its folder, name); ValueError when malformed."""
    location = parse_rclone_url(url)
    folder, _, name = location.path.rpartition("/")
    if not name:
        raise ValueError("name a stored file: rclone:<remote>:<path>/<name>")
    return RcloneTarget(type(location)(location.remote, folder), env), name


def open_stored(url: str, env: Mapping[str, str]):
    """(opener, recorded sha256 or None) for a stored file on an rclone remote; fails early when absent."""
    target, name = split_file_url(url, env)
    if not target.exists(name):
        raise StorageError(f"{url} does not exist (or this remote cannot list it)")

    def opener():
        return IterStream(url, target.open(name))

    return opener, target.companion_sha256(name)
