"""Counting COPY rows in a streamed dump, however the stream is cut into chunks; recording them as metadata."""

from __future__ import annotations

import json

import pytest

from backup_svc.dump.tabledata import TableDataScanner
from backup_svc.dump.rowcount import METADATA_BUDGET, count_rows, counts_from_metadata, counts_metadata

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
EXPECTED = {("public", "t"): 3, ("Mixed Case", "Order Items"): 2, ("app", "empty"): 0, ("app", 'we"ird'): 3}


def test_whole_dump():
    assert count_rows([DUMP]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64])
def test_any_chunking_gives_the_same_counts(size):
    assert count_rows(DUMP[i : i + size] for i in range(0, len(DUMP), size)) == EXPECTED


def test_long_rows_across_chunks():
    big = b"x" * 300_000
    dump = b"\nCOPY public.blobs (b) FROM stdin;\n" + big + b"\n" + big + b"\nshort\n\\.\n"
    assert count_rows(dump[i : i + 10000] for i in range(0, len(dump), 10000)) == {("public", "blobs"): 3}


def test_counting_is_off_unless_asked():
    scanner = TableDataScanner(lambda _: None, lambda: None)
    scanner.feed(DUMP)
    assert scanner.rows is None


def test_metadata_round_trip():
    meta = counts_metadata(EXPECTED)
    assert meta["rows"] == "8" and meta["tables"] == "4"
    assert json.loads(meta["row-counts"])["Mixed Case"] == {"Order Items": 2}
    assert meta["row-counts"].isascii()
    assert counts_from_metadata(meta) == (EXPECTED, 8, 4)


def test_metadata_keeps_totals_when_the_tables_do_not_fit():
    many = {("public", f"table_number_{i}"): i for i in range(200)}
    meta = counts_metadata(many)
    assert "row-counts" not in meta and sum(len(v) for v in meta.values()) < METADATA_BUDGET
    assert counts_from_metadata(meta) == (None, sum(range(200)), 200)


@pytest.mark.parametrize(
    "meta",
    [
        {"sha256": "ab"},
        {"row-counts": "not json", "rows": "x"},
        {"row-counts": "[1, 2]"},
        {"row-counts": '{"s": {"t": "many"}}'},
    ],
)
def test_metadata_without_usable_counts(meta):
    assert counts_from_metadata(meta)[0] is None
