"""The streaming SQL scanner behind `verify` and `restore`: the same answer however the input is cut,
COPY data never mistaken for statements, and only pg_dump's own large-object BEGIN/COMMIT dropped."""

from __future__ import annotations

import pytest

from backup_svc.dump.completion import ends_complete
from backup_svc.files.scan import MAX_CARRY, DumpScanner

LO_SECTION = (
    b"--\n-- TOC entry 3687 (class 0 OID 0)\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n"
    b"--\n\nBEGIN;\n\nSELECT pg_catalog.lo_open('16807', 131072);\n"
    b"SELECT pg_catalog.lowrite(0, '\\x6120');\nSELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n\n"
)
DUMP = (
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict KEY\n\n"
    b"-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)\n"
    b"-- Dumped by pg_dump version 16.10\n\n"
    # a procedure whose body commits: not pg_dump's transaction, must stay
    b"CREATE PROCEDURE app.p() LANGUAGE plpgsql AS $$\nBEGIN\nCOMMIT;\nEND $$;\n\n"
    # rows that look like the large-object section: data, must stay
    b"COPY public.lines (line) FROM stdin;\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\n"
    b"BEGIN;\nCOPY x FROM stdin;\nCOMMIT;\n\\.\n\n"
    b"COPY public.t (a, b) FROM stdin;\n1\t\\\\.\n\\.\n\n"
    + LO_SECTION
    + b"-- Completed on 2026-01-01 00:00:00 UTC\n\n--\n-- PostgreSQL database dump complete\n--\n\n"
    b"\\unrestrict KEY\n\n"
)
EXPECTED = DUMP.replace(LO_SECTION, LO_SECTION.replace(b"BEGIN;\n", b"").replace(b"COMMIT;\n", b""))


def scan(data: bytes, chunk_size: int, **options) -> tuple[DumpScanner, bytes]:
    scanner = DumpScanner(**options)
    out = [scanner.feed(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]
    out.append(scanner.finish())
    return scanner, b"".join(out)


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 4096, len(DUMP)])
def test_same_result_however_the_input_is_cut(chunk_size):
    scanner, out = scan(DUMP, chunk_size, drop_lo_transaction=True)

    assert out == EXPECTED
    assert scanner.copy_statements == 2
    assert scanner.server_version == "15.18 (Debian 15.18-0+deb12u1)"
    assert scanner.pg_dump_version == "16.10"
    assert scanner.problem() is None
    assert scanner.sql_bytes == len(DUMP)


def test_passes_everything_through_unless_asked():
    scanner, out = scan(DUMP, 100)
    assert out == DUMP


def state(scanner: DumpScanner) -> tuple:
    return (
        scanner.copy_statements,
        scanner.server_version,
        scanner.pg_dump_version,
        scanner.encoding,
        scanner.in_copy,
        scanner.problem(),
        scanner.sql_bytes,
    )


LONG_ROW_DUMP = (
    b"-- Dumped from database version 15.1\n-- Dumped by pg_dump version 15.1\nCOPY t (a) FROM stdin;\n"
    + b"x" * (MAX_CARRY + 10)
    + b"\\\\.\nCOPY inside_data FROM stdin;\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n"
)


CUTS = {
    "whole": DUMP,
    "cut in a COPY block": DUMP[: DUMP.index(b"1\t")],
    "cut before its completion line": DUMP[: DUMP.index(b"-- Completed on")],
    "a row longer than the carry": LONG_ROW_DUMP,
}


@pytest.mark.parametrize(
    "sql, chunk_size",
    [
        pytest.param(sql, size, id=f"{name}-{size}")
        for name, sql in CUTS.items()
        for size in (1, 2, 3, 7, 64, 4096, MAX_CARRY - 1, MAX_CARRY + 1)
        if size >= 64 or len(sql) < MAX_CARRY  # not a million one-byte pieces of the long row
    ],
)
def test_check_sees_what_feed_sees(sql, chunk_size):
    """`check` (the parallel restore's: scanned where it lies, nothing passed on) ends in the same state
    as `feed`, however the input is cut: whole, cut in a COPY block, before its completion line, and a
    row longer than the carry whose continuation reads `\\.`."""
    fed, checked = DumpScanner(), DumpScanner()
    for i in range(0, len(sql), chunk_size):
        fed.feed(sql[i : i + chunk_size])
        checked.check(sql[i : i + chunk_size])
    assert state(checked) == state(fed)
    assert state(fed)[0] in (1, 2)  # the COPY statements were found (and "COPY inside_data" is a row)


def test_a_row_longer_than_the_carry_is_passed_on_and_not_taken_for_a_line():
    """The row is cut right after an escaped backslash: its continuation reads `\\.`, the COPY end
    marker, and must not end the COPY block."""
    long_row = b"x" * (MAX_CARRY + 10) + b"\\"
    head = b"-- Dumped from database version 15.1\n-- Dumped by pg_dump version 15.1\nCOPY t (a) FROM stdin;\n"
    rest = b"\\.\nCOPY inside_data FROM stdin;\n\\.\n\n--\n-- PostgreSQL database dump complete\n--\n"
    scanner = DumpScanner()

    out = scanner.feed(head + long_row) + scanner.feed(rest) + scanner.finish()

    assert out == head + long_row + rest
    assert scanner.copy_statements == 1  # the second "COPY" line is data of the first block
    assert scanner.problem() is None
    checked = DumpScanner()  # the same pieces, scanned where they lie
    checked.check(head + long_row)
    checked.check(rest)
    assert state(checked) == state(scanner)


@pytest.mark.parametrize(
    "cut, reason",
    [
        (DUMP.index(b"1\t"), "ends inside a COPY statement's data"),
        (DUMP.index(b"-- Completed on"), "ends without pg_dump's completion line"),
        (DUMP.index(b"-- Dumped by"), "not a plain pg_dump"),
    ],
)
def test_cut_dumps_are_named_for_what_is_missing(cut, reason):
    scanner, _ = scan(DUMP[:cut], 4096)
    assert reason in scanner.problem()


@pytest.mark.parametrize(
    "tail, complete",
    [
        (b"x;\n\n--\n-- PostgreSQL database dump complete\n--\n\n", True),
        (b"x;\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abcDEF123\n\n", True),
        (b"-- PostgreSQL database dump complete\n--\n", True),  # the tail window may start at the line
        (b"x;\n--\n-- PostgreSQL database dump complete\n--\nDROP TABLE t;\n", False),
        (b"x;\n--\n-- PostgreSQL database dump\n--\n", False),
        (b"SELECT '-- PostgreSQL database dump complete';\n", False),
        (b"", False),
    ],
)
def test_completion_line_must_end_the_dump(tail, complete):
    assert ends_complete(tail) is complete
