"""Why a night uploads more than it changed: the share of new bytes between two plain dumps cut by FastCDC.

    .venv/bin/python -m bench.chunk_share OLD.sql[.gz] NEW.sql[.gz] --chunk-sizes 64KiB,256KiB,1MiB

For each average chunk size (min = avg/4, max = 4*avg, as backup_svc/storage/dedup/chunks.py derives them)
it cuts both dumps the way the dedup writer does (the header up to pg_dump's per-run lines and the end from
them are chunks of their own, the rest is cut by content) and reports which share of NEW's bytes are in
chunks OLD does not have, per table (the COPY block a new chunk's bytes fall in). Two more figures separate
the two suspects for a night that uploads far more than it changed:

- the changed rows: bytes of NEW's rows that are not rows of OLD (per table) — the floor any chunking pays;
- the same cut after sorting each table's rows by their leading key ("sorted"): the rows are the same, only
  their physical order (pg_dump writes a table in heap order, and an updated row moves to another page)
  is taken away. If the sorted share is far below pg_dump's, row order is the cause; if both stay high,
  it is chunk size against scattered changes.

bench/dedup_nights.py --chunk-sizes runs this on every pair of consecutive nights. Both dumps, their sorted
copies and every table's rows are held in memory: 0.86 GB peak RSS for two 152 MB dumps (measured), so a few
GB at 300 MB.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import hashlib
import re
from dataclasses import dataclass

from pyfastcdc import FastCDC

# What the dedup writer cuts off as chunks of their own (writer.py's _HEADER_LINES / _TRAILER_LINES).
HEADER_LINES = (b"\n\\restrict ", b"\n-- Started on ")
TRAILER_LINES = (b"\n-- Completed on ", b"\n\\unrestrict ")
HEADER_SPAN = 64 * 1024
OTHER = "(schema, header, trailer)"


def parse_chunk_size(text: str) -> int:
    """'64KiB' -> 65536, '1MiB' -> 1048576 (KiB/MiB, or a plain number of bytes)."""
    match = re.fullmatch(r"\s*(\d+)\s*(KiB|MiB|B)?\s*", text, re.I)
    if not match:
        raise ValueError(f"a chunk size looks like 64KiB or 1MiB, got {text!r}")
    return int(match.group(1)) * {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20}[(match.group(2) or "").lower()]


def sections(sql: bytes) -> list[tuple[str, int, int]]:
    """Each table's COPY block as (table, start, end): from its `COPY` line to the end of its `\\.` line."""
    found = []
    at = sql.find(b"\nCOPY ")
    while at >= 0:
        start = at + 1
        name = sql[start + 5 : sql.find(b" ", start + 5)].decode()
        end = sql.find(b"\n\\.\n", start)
        end = len(sql) if end < 0 else end + 4
        found.append((name, start, end))
        at = sql.find(b"\nCOPY ", end - 1)
    return found


def _key(line: bytes) -> tuple[int, bytes]:
    head = line.split(b"\t", 1)[0]
    return (int(head), line) if head.isdigit() else (0, line)


def sort_rows(sql: bytes) -> bytes:
    """The dump with each table's rows sorted by their first column (as a number when it is one), then the line."""
    out = bytearray()
    done = 0
    for _, start, end in sections(sql):
        body = sql.index(b"\n", start) + 1  # after the COPY line
        rows = sql[body : end - 3].split(b"\n")[:-1]  # up to the `\.` line; each row ends with a newline
        out += sql[done:body]
        for row in sorted(rows, key=_key):
            out += row + b"\n"
        done = end - 3
    out += sql[done:]
    return bytes(out)


def table_rows(sql: bytes) -> dict[str, list[bytes]]:
    return {name: sql[sql.index(b"\n", start) + 1 : end - 3].split(b"\n")[:-1] for name, start, end in sections(sql)}


@dataclass
class RowChange:
    """One table's rows in NEW that are not rows of OLD (inserted, or updated: the new version)."""

    rows: int = 0
    bytes: int = 0
    among_old: int = 0  # of those, placed before the table's last unchanged row in dump (= heap) order


def changed_rows(old: bytes, new: bytes) -> dict[str, RowChange]:
    """Per table of NEW: its rows that are not rows of OLD, and how many of them pg_dump wrote among OLD's rows
    rather than after them (a row placed into free space inside the table, not appended at its end)."""
    before = table_rows(old)
    out = {}
    for name, rows in table_rows(new).items():
        seen = set(before.get(name, ()))
        fresh = [r not in seen for r in rows]
        last_old = max((i for i, f in enumerate(fresh) if not f), default=-1)
        out[name] = RowChange(sum(fresh), sum(len(r) + 1 for r, f in zip(rows, fresh) if f), sum(fresh[: last_old + 1]))
    return out


def split_ends(sql: bytes) -> tuple[int, int]:
    """(end of the header, start of the trailer) as the dedup writer cuts them (0 / len when absent)."""
    starts = [sql.find(line, 0, HEADER_SPAN) for line in HEADER_LINES]
    head = max((sql.find(b"\n", s + 1) + 1 for s in starts if s >= 0), default=0)
    tails = [sql.rfind(line) + 1 for line in TRAILER_LINES]
    tail = min((t for t in tails if t > 0), default=len(sql))
    return head, max(head, tail)


def cut(sql: bytes, avg: int) -> list[tuple[bytes, int, int]]:
    """(digest, offset, length) of each chunk, as the dedup writer would cut `sql` at this average size."""
    head, tail = split_ends(sql)
    view = memoryview(sql)
    pieces = [(0, head)] if head else []
    pieces += [
        (head + c.offset, c.length) for c in FastCDC(avg, min_size=avg // 4, max_size=avg * 4).cut_buf(view[head:tail])
    ]
    if tail < len(sql):
        pieces.append((tail, len(sql) - tail))
    chunks = [(hashlib.blake2b(view[o : o + n], digest_size=16).digest(), o, n) for o, n in pieces]
    view.release()
    return chunks


def new_bytes(old_ids: set[bytes], chunks: list[tuple[bytes, int, int]]) -> list[tuple[int, int]]:
    """(offset, length) of the chunks whose digest is not in `old_ids`, each counted once (a chunk repeated
    within the new dump is uploaded once)."""
    seen = set(old_ids)
    fresh = []
    for digest, offset, length in chunks:
        if digest not in seen:
            seen.add(digest)
            fresh.append((offset, length))
    return fresh


def by_section(spans: list[tuple[int, int]], blocks: list[tuple[str, int, int]]) -> dict[str, int]:
    """Bytes of `spans` falling in each table's block (blocks in order, not overlapping); the rest under OTHER."""
    starts = [start for _, start, _ in blocks]
    out: dict[str, int] = {}
    for offset, length in spans:
        end = offset + length
        inside = 0
        for name, start, stop in blocks[
            max(0, bisect.bisect_right(starts, offset) - 1) : bisect.bisect_left(starts, end)
        ]:
            overlap = min(end, stop) - max(offset, start)
            if overlap > 0:
                out[name] = out.get(name, 0) + overlap
                inside += overlap
        if length > inside:
            out[OTHER] = out.get(OTHER, 0) + length - inside
    return out


def read_sql(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def label(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


def compressed(sql: bytes, spans: list[tuple[int, int]]) -> int:
    """Bytes the spans' chunks take compressed as the dedup store keeps them (ISA-L/zlib level 1 each)."""
    from backup_svc.storage.dedup.chunks import compress_chunk

    view = memoryview(sql)
    try:
        return sum(len(compress_chunk(view[o : o + n])) for o, n in spans)
    finally:
        view.release()


def report(old: bytes, new: bytes, sizes: list[int], title: str = "") -> list[str]:
    """Markdown lines: per chunk size, the new share in pg_dump's order (plain and compressed, per table) and
    with every table's rows sorted by key; tables under 1 % of the dump are left out of the columns."""
    blocks = sections(new)
    size_of = {name: end - start for name, start, end in blocks}
    tables = [name for name in size_of if size_of[name] >= 0.01 * len(new)]
    changed = changed_rows(old, new)
    changed_total = sum(c.bytes for c in changed.values())
    old_sorted, new_sorted = sort_rows(old), sort_rows(new)
    lines = [
        f"{title}{len(new) / 1e6:.1f} MB of SQL; rows not in the night before: "
        + ", ".join(
            f"{t.split('.')[-1]} {changed[t].rows} ({changed[t].among_old} of them placed among its older rows)"
            for t in tables
        ),
        "",
        "| avg chunk | rows in | new share (plain) | new compressed / all compressed | "
        + " | ".join(t.split(".")[-1] for t in tables)
        + " |",
        "|---|---|---|---|" + "---|" * len(tables),
        f"| — | changed rows only | {100 * changed_total / len(new):.2f} % | — | "
        + " | ".join(f"{100 * changed[t].bytes / size_of[t]:.1f} %" for t in tables)
        + " |",
    ]
    for avg in sizes:
        for order, (a, b) in (("pg_dump's order", (old, new)), ("key order", (old_sorted, new_sorted))):
            chunks = cut(b, avg)
            spans = new_bytes({d for d, _, _ in cut(a, avg)}, chunks)
            per_table = by_section(spans, sections(b))
            packed = (
                f"{100 * compressed(b, spans) / compressed(b, [(o, n) for _, o, n in chunks]):.1f} %"
                if order == "pg_dump's order"
                else "—"
            )
            lines.append(
                f"| {label(avg)} | {order} | {100 * sum(n for _, n in spans) / len(b):.1f} % | {packed} | "
                + " | ".join(f"{100 * per_table.get(t, 0) / size_of[t]:.1f} %" for t in tables)
                + " |"
            )
    lines.append(
        "(a table's column: its new bytes as a share of its own COPY block; blocks "
        + ", ".join(f"{t.split('.')[-1]} {size_of[t] / 1e6:.1f} MB" for t in tables)
        + ")"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--chunk-sizes", default="64KiB,256KiB,1MiB")
    args = parser.parse_args()
    sizes = [parse_chunk_size(s) for s in args.chunk_sizes.split(",")]
    print("\n".join(report(read_sql(args.old), read_sql(args.new), sizes)))


if __name__ == "__main__":
    main()
