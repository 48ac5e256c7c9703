"""Following the SQL of a plain pg_dump as it streams by (constant memory, one pass).

It notes the header versions, counts COPY blocks, keeps the tail for the completion check and can
drop the `BEGIN;` / `COMMIT;` that pg_dump writes around large-object data: under
`psql --single-transaction` that COMMIT would commit everything restored so far and leave the rest
running outside any transaction, so a later error could no longer undo the restore.
"""

from __future__ import annotations

from stringzilla import find as _find

from backup_svc.dump.completion import INCOMPLETE_REASON, SqlTail

# An unfinished line is carried to the next chunk only up to this size. Every line the scanner
# must see whole (COPY headers, comments, BEGIN/COMMIT) is far shorter; longer ones (huge rows) are
# passed on as they come and their continuation is not taken for a line start.
MAX_CARRY = 1 << 20
SERVER_HEADER = b"-- Dumped from database version "
PG_DUMP_HEADER = b"-- Dumped by pg_dump version "
COPY_END_LINE = b"\\.\n"
_AFTER_A_ROW = b"\n" + COPY_END_LINE
# pg_dump sets the dump's encoding (the source database's, unless --encoding) in its first statements.
ENCODING_SET = b"SET client_encoding = '"
# The comment pg_dump puts before large-object data ("Data for Name: BLOBS; Type: BLOBS; ..." and,
# from 17 on, "Data for Name: LARGE OBJECTS 16384..16390; Type: BLOBS; ...").
LO_DATA_MARK = b"; Type: BLOBS;"


def _without(buf: bytes, end: int, dropped: list[tuple[int, int]]) -> bytes:
    kept, start = [], 0
    for begin, stop in dropped:
        kept.append(buf[start:begin])
        start = stop
    kept.append(buf[start:end])
    return b"".join(kept)


class DumpScanner:
    """Feed it the SQL in chunks of any size; `feed` returns the SQL to pass on.

    COPY data is skipped to the line that ends it with stringzilla's SIMD find, row by row never, so
    scanning costs little next to the decompression itself (0.02 s per 300 MB of SQL).
    """

    def __init__(self, *, drop_lo_transaction: bool = False) -> None:
        self.drop_lo_transaction = drop_lo_transaction
        self.tail = SqlTail()
        self.sql_bytes = 0
        self.copy_statements = 0
        self.server_version: str | None = None
        self.pg_dump_version: str | None = None
        self.encoding: str | None = None  # the SQL's client_encoding, e.g. "UTF8", "LATIN1"
        self.in_copy = False
        self._lo_state: str | None = None  # "header": after the large-object comment; "data": inside its BEGIN
        self._carry = b""
        self._midline = False  # the next bytes continue a line that was already passed on

    def feed(self, data: bytes) -> bytes:
        """Scan the next piece of SQL (pieces may split lines anywhere); return what to pass on."""
        self.sql_bytes += len(data)
        self.tail.feed(data)
        buf = self._carry + data if self._carry else data
        cut = buf.rfind(b"\n") + 1
        dropped = self._scan(buf, 0, cut) if cut else []
        out = _without(buf, cut, dropped) if dropped else buf[:cut]
        partial = buf[cut:]
        if len(partial) > MAX_CARRY:
            self._carry, self._midline = b"", True
            return out + partial
        self._carry = partial
        return out

    def check(self, data: bytes) -> None:
        """`feed` for a caller that passes the SQL on by itself: the piece is scanned where it lies,
        nothing is copied and nothing dropped."""
        assert not self.drop_lo_transaction, "only feed() can drop lines"
        self.sql_bytes += len(data)
        self.tail.feed(data)
        start = 0
        if self._carry:
            nl = data.find(b"\n")
            if nl >= 0:
                head, self._carry = self._carry + data[: nl + 1], b""
                self._scan(head, 0, len(head))
                start = nl + 1
        cut = data.rfind(b"\n") + 1
        if cut > start:
            self._scan(data, start, cut)
        rest = max(cut, start)
        partial = self._carry + data[rest:] if self._carry else data[rest:]  # a carry left: no line ended here
        if len(partial) > MAX_CARRY:
            self._carry, self._midline = b"", True
        else:
            self._carry = partial

    def finish(self) -> bytes:
        """The last, unterminated line (if any), once the input has ended."""
        rest, self._carry = self._carry, b""
        return rest

    def _scan(self, buf: bytes, pos: int, end: int) -> list[tuple[int, int]]:
        """Follow the complete lines buf[pos:end] (`end` is just after a newline); return the
        (start, end) of each line to drop."""
        if self._midline:
            pos = buf.index(b"\n", pos) + 1  # the rest of a line already passed on
            self._midline = False
        dropped: list[tuple[int, int]] = []
        while pos < end:
            if self.in_copy:
                # Rows are not looked at one by one: the data ends at the first line that is `\.`.
                if buf.startswith(COPY_END_LINE, pos):
                    pos += len(COPY_END_LINE)
                else:
                    found = _find(buf, _AFTER_A_ROW, pos, end)
                    if found < 0:
                        break  # the COPY data goes on in the next piece
                    pos = found + len(_AFTER_A_ROW)
                self.in_copy = False
                continue
            nl = buf.index(b"\n", pos)
            if self._statement_line(buf[pos:nl]):
                dropped.append((pos, nl + 1))
            pos = nl + 1
        return dropped

    def _statement_line(self, line: bytes) -> bool:
        """Note what `line` (outside COPY data) says; True when it is to be dropped."""
        if self._lo_state == "data":
            if line == b"COMMIT;":
                self._lo_state = None
                return self.drop_lo_transaction
            return False
        if self._lo_state == "header":
            if line == b"BEGIN;":
                self._lo_state = "data"
                return self.drop_lo_transaction
            if line in (b"", b"--"):
                return False
            self._lo_state = None
        if line.startswith(ENCODING_SET) and self.encoding is None:
            self.encoding = line[len(ENCODING_SET) :].split(b"'", 1)[0].decode("ascii", "replace")
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b" FROM stdin;"):
            self.copy_statements += 1
            self.in_copy = True
        elif line.startswith(b"-- "):
            if LO_DATA_MARK in line:
                self._lo_state = "header"
            elif line.startswith(SERVER_HEADER) and self.server_version is None:
                self.server_version = line[len(SERVER_HEADER) :].decode("utf-8", "replace").strip()
            elif line.startswith(PG_DUMP_HEADER) and self.pg_dump_version is None:
                self.pg_dump_version = line[len(PG_DUMP_HEADER) :].decode("utf-8", "replace").strip()
        return False

    def problem(self) -> str | None:
        """Why the SQL seen so far is not a complete plain pg_dump, or None when it is."""
        if self.pg_dump_version is None or self.server_version is None:
            return "no '-- Dumped by pg_dump version' / '-- Dumped from database version' header: not a plain pg_dump"
        if self.in_copy:
            return "the SQL ends inside a COPY statement's data: the dump was cut short"
        if not self.tail.is_complete():
            return INCOMPLETE_REASON
        return None
