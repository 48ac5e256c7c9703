"""Telling a finished plain-SQL dump from a cut one by its last bytes (pg_dump's closing comment)."""

from __future__ import annotations

# pg_dump writes this comment only after everything else; a dump that lacks it was cut short,
# whatever the exit status said.
COMPLETION_LINE = b"-- PostgreSQL database dump complete"
# What follows the completion comment is at most a few short lines (`--`, blank lines and, from
# pg_dump 15.14/16.10/17.6 on, `\unrestrict <64-character key>`): 4 KiB holds them many times over.
TAIL_SIZE = 4096


def ends_complete(tail: bytes) -> bool:
    """True when `tail` (a dump's last bytes) ends with pg_dump's completion comment.

    After that comment only `--` lines, blank lines and an `\\unrestrict KEY` line may follow.
    """
    at = tail.rfind(COMPLETION_LINE)
    if at < 0 or (at > 0 and tail[at - 1 : at] != b"\n"):
        return False
    for line in tail[at + len(COMPLETION_LINE) :].split(b"\n"):
        line = line.strip()
        if line not in (b"", b"--") and not line.startswith(b"\\unrestrict "):
            return False
    return True


class SqlTail:
    """The last TAIL_SIZE bytes of a stream of SQL, kept as it flows by (constant memory)."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> None:
        """Remember the end of `data`, the newest part of the stream."""
        if len(data) >= TAIL_SIZE:
            self._tail = data[-TAIL_SIZE:]
        else:
            self._tail = (self._tail + data)[-TAIL_SIZE:]

    def is_complete(self) -> bool:
        """True when the stream so far ends with pg_dump's completion comment."""
        return ends_complete(self._tail)


INCOMPLETE_REASON = (
    "the SQL ends without pg_dump's completion line ('-- PostgreSQL database dump complete'): the dump was cut short"
)
