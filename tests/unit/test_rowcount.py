"""Counting COPY rows in a streamed dump, however the stream is cut into chunks."""
from __future__ import annotations

import pytest

from backup_svc.notify.rowcount import (MAX_CARRY, METADATA_BUDGET, RowCounter, copy_target, counts_from_metadata,
                                        counts_metadata)

DUMP = b"""--
-- PostgreSQL database dump
--
CREATE TABLE public.t (a int);
COPY public.t (a) FROM stdin;
1
2
3
\\.

COPY "Mixed Case"."Order Items" ("Id", "Qty") FROM stdin;
1\t2
2\t\\N
\\.

COPY app.empty (x) FROM stdin;
\\.

CREATE FUNCTION f() RETURNS void AS $$ SELECT 1 $$ LANGUAGE sql;
COPY app."we""ird" (note) FROM stdin;
line with \\\\. inside
\\\\.
a\\nb
\\.

-- PostgreSQL database dump complete
"""
EXPECTED = {"public.t": 3, '"Mixed Case"."Order Items"': 2, "app.empty": 0, 'app."we""ird"': 3}


def count(chunks) -> dict[str, int]:
    counter = RowCounter()
    for chunk in chunks:
        counter.feed(chunk)
    return counter.counts


def test_whole_dump():
    assert count([DUMP]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64])
def test_any_chunking_gives_the_same_counts(size):
    assert count(DUMP[i:i + size] for i in range(0, len(DUMP), size)) == EXPECTED


def test_rows_longer_than_the_carry_are_counted_once():
    big = b"x" * (MAX_CARRY * 3)
    dump = b"COPY public.blobs (b) FROM stdin;\n" + big + b"\n" + big + b"\nshort\n\\.\n"
    chunks = [dump[i:i + 10000] for i in range(0, len(dump), 10000)]
    assert count(chunks) == {"public.blobs": 3}


def test_a_long_statement_before_copy_does_not_hide_it():
    dump = b"SELECT '" + b"y" * (MAX_CARRY * 2) + b"';\nCOPY public.t (a) FROM stdin;\n1\n\\.\n"
    assert count(dump[i:i + 4096] for i in range(0, len(dump), 4096)) == {"public.t": 1}


@pytest.mark.parametrize("header, name", [
    (b"COPY public.t (a) FROM stdin;", "public.t"),
    (b'COPY "Mixed Case"."Order Items" ("Id") FROM stdin;', '"Mixed Case"."Order Items"'),
    (b'COPY s."a.b (c)" FROM stdin;', 's."a.b (c)"'),
    (b"COPY t FROM stdin;", "t"),
])
def test_copy_target(header, name):
    assert copy_target(header) == name


def test_metadata_round_trip():
    meta = counts_metadata(EXPECTED)
    assert meta["rows"] == "8" and meta["tables"] == "4"
    assert counts_from_metadata(meta) == (EXPECTED, 8, 4)


def test_metadata_keeps_totals_when_the_tables_do_not_fit():
    many = {f"public.table_number_{i}": i for i in range(200)}
    meta = counts_metadata(many)
    assert "row-counts" not in meta and sum(len(v) for v in meta.values()) < METADATA_BUDGET
    assert counts_from_metadata(meta) == (None, sum(range(200)), 200)


def test_metadata_without_counts():
    assert counts_from_metadata({"sha256": "ab"}) == (None, None, None)
    assert counts_from_metadata({"row-counts": "not json", "rows": "x"}) == (None, None, None)
