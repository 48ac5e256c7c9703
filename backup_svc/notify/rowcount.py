"""Counting the rows of each table in a plain pg_dump's SQL as it streams by.

In COPY text format every row is one line (newlines inside values are escaped) and the data ends
with a line `\\.`: the number of lines in between is the table's row count in pg_dump's snapshot,
the exact count the source held when it was dumped. The work is `bytes.find` / `bytes.count` over
each chunk (C speed), so it can run beside the dump itself as well as beside a restore drill.
"""
from __future__ import annotations

import json

COPY_PREFIX = b"COPY "
COPY_SUFFIX = b" FROM stdin;"
END_MARK = b"\\.\n"
# A line held back for the next chunk is at most this long; longer ones are statements or rows
# whose start has already been seen.
MAX_CARRY = 1 << 16


def copy_target(header: bytes) -> str | None:
    """`public.t` from `COPY public.t (a, b) FROM stdin;`, identifiers quoted as pg_dump wrote them."""
    text = header[len(COPY_PREFIX):].decode("utf-8", "replace")
    out, i, parts = [], 0, 0
    while i < len(text):
        c = text[i]
        if c == '"':
            end = i + 1
            while True:
                end = text.find('"', end)
                if end < 0:
                    return None
                if text[end + 1:end + 2] == '"':
                    end += 2
                    continue
                break
            out.append(text[i:end + 1])
            i = end + 1
        elif c == ".":
            out.append(".")
            parts += 1
            i += 1
        elif c in " (":
            break
        else:
            out.append(c)
            i += 1
    name = "".join(out)
    return name if name and parts <= 1 else None


class RowCounter:
    """Feed it SQL in chunks of any size; `counts` maps each table pg_dump wrote data for to its rows."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._table: str | None = None  # inside this table's COPY data
        self._carry = b""  # an unfinished line
        self._midline = False  # the next bytes continue a line whose start was already handled

    def feed(self, data: bytes) -> None:
        """Count the rows in the next piece of SQL."""
        buf = self._carry + data if self._carry else data
        end = buf.rfind(b"\n") + 1
        if end:
            self._lines(buf, end)
            rest = buf[end:]
        else:
            rest = buf
        if len(rest) > MAX_CARRY:
            self._carry, self._midline = b"", True
        else:
            self._carry = rest

    def _lines(self, buf: bytes, end: int) -> None:
        """Handle the complete lines in buf[:end]."""
        pos = 0
        if self._midline:  # the rest of a long line: it ends at the first newline
            pos = buf.index(b"\n") + 1
            self._midline = False
            if self._table is not None:
                self.counts[self._table] += 1
        while pos < end:
            if self._table is not None:
                if buf.startswith(END_MARK, pos):
                    self._table = None
                    pos += len(END_MARK)
                    continue
                mark = buf.find(b"\n" + END_MARK, pos, end)
                if mark < 0:
                    self.counts[self._table] += buf.count(b"\n", pos, end)
                    return
                self.counts[self._table] += buf.count(b"\n", pos, mark + 1)
                self._table = None
                pos = mark + 1 + len(END_MARK)
                continue
            if not buf.startswith(COPY_PREFIX, pos):
                found = buf.find(b"\n" + COPY_PREFIX, pos, end)
                if found < 0:
                    return
                pos = found + 1
            line_end = buf.index(b"\n", pos)
            line = buf[pos:line_end]
            pos = line_end + 1
            if line.rstrip().endswith(COPY_SUFFIX):
                table = copy_target(line)
                if table is not None:
                    self._table = table
                    self.counts.setdefault(table, 0)

    @property
    def tables(self) -> int:
        return len(self.counts)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


# Object storage allows about 2 KiB of user metadata per object; the per-table counts go there
# only when they fit comfortably, the totals always do.
METADATA_BUDGET = 1500


def counts_metadata(counts: dict[str, int]) -> dict[str, str]:
    """User-metadata entries recording row counts at dump time: `rows`, `tables`, and `row-counts`
    (compact JSON of every table's count) when it fits."""
    meta = {"rows": str(sum(counts.values())), "tables": str(len(counts))}
    compact = json.dumps(counts, separators=(",", ":"), ensure_ascii=True)
    if len(compact) <= METADATA_BUDGET:
        meta["row-counts"] = compact
    return meta


def counts_from_metadata(meta: dict[str, str]) -> tuple[dict[str, int] | None, int | None, int | None]:
    """(per-table counts or None, total rows or None, tables or None) from an object's user metadata."""
    def number(key: str) -> int | None:
        try:
            return int(meta[key])
        except (KeyError, ValueError):
            return None

    per_table = None
    if "row-counts" in meta:
        try:
            loaded = json.loads(meta["row-counts"])
            if isinstance(loaded, dict) and all(isinstance(v, int) for v in loaded.values()):
                per_table = loaded
        except ValueError:
            per_table = None
    return per_table, number("rows"), number("tables")
