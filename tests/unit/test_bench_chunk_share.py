"""bench/chunk_share.py's arithmetic on small made-up dumps: which bytes of a night are new, which table they
belong to, and what sorting rows by key takes away. bench/dedup_nights.py's day of changes as SQL."""

from __future__ import annotations

import random

from bench.chunk_share import OTHER, by_section, changed_rows, cut, new_bytes, sections, sort_rows
from bench.dataset import DOC_ROW
from bench.dedup_nights import change_sql

AVG = 4096  # small chunks, so that a 1 MB made-up dump has a few hundred


def row(key: int, rng: random.Random) -> bytes:
    return b"%d\t%s\t%d" % (key, rng.randbytes(40).hex().encode(), rng.randrange(10**6))


def dump(tables: dict[str, list[bytes]]) -> bytes:
    """A plain dump's shape: a header, each table's COPY block, a trailer."""
    out = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    for name, rows in tables.items():
        out += b"\nCOPY public.%s (id, body, n) FROM stdin;\n" % name.encode() + b"".join(r + b"\n" for r in rows)
        out += b"\\.\n\n"
    return out + b"--\n-- PostgreSQL database dump complete\n--\n"


def tables(seed: int = 7) -> dict[str, list[bytes]]:
    rng = random.Random(seed)
    return {"a": [row(k, rng) for k in range(1, 6001)], "b": [row(k, rng) for k in range(1, 6001)]}


def new_spans(old: bytes, new: bytes):
    return new_bytes({d for d, _, _ in cut(old, AVG)}, cut(new, AVG))


def test_a_row_changed_in_one_table_is_new_bytes_of_that_table_only():
    before = tables()
    after = {name: list(rows) for name, rows in before.items()}
    after["b"][3000] = row(3001, random.Random(99))
    old, new = dump(before), dump(after)
    spans = new_spans(old, new)
    per_table = by_section(spans, sections(new))
    assert set(per_table) == {"public.b"}
    assert 0 < per_table["public.b"] == sum(n for _, n in spans) <= 4 * 4 * AVG  # one or two chunks, ≤ max size
    assert new_spans(old, old) == []


def test_bytes_outside_every_copy_block_are_counted_apart():
    old = dump(tables())
    new = old.replace(b"SET statement_timeout = 0;", b"SET statement_timeout = 1;")
    spans = new_spans(old, new)
    per_table = by_section(spans, sections(new))
    first_copy = sections(new)[0][1]
    assert spans[0][0] == 0 and spans[0][1] > first_copy  # the header is smaller than a chunk
    assert per_table == {OTHER: first_copy, "public.a": sum(n for _, n in spans) - first_copy}


def test_a_row_moved_to_another_place_is_new_in_dump_order_but_not_in_key_order():
    before = tables()
    after = {name: list(rows) for name, rows in before.items()}
    moved = after["a"].pop(5500)  # an updated row's new version lands on an early page's free space
    after["a"].insert(10, moved)
    old, new = dump(before), dump(after)
    assert new_spans(old, new)
    assert sort_rows(old) == old and new_spans(sort_rows(old), sort_rows(new)) == []


def test_rows_are_sorted_by_their_key_as_a_number():
    rows = [row(k, random.Random(k)) for k in (10, 9, 100, 2)]
    sorted_dump = sort_rows(dump({"t": rows}))
    assert [r.split(b"\t")[0] for r in sorted_dump.split(b"\n") if b"\t" in r] == [b"2", b"9", b"10", b"100"]


def test_changed_rows_tell_appended_rows_from_rows_placed_among_older_ones():
    before = tables()
    after = {name: list(rows) for name, rows in before.items()}
    rng = random.Random(5)
    after["a"].insert(100, row(6001, rng))  # into free space inside the table
    after["a"].append(row(6002, rng))  # at its end
    after["b"][0] = row(1, rng)  # updated in place
    change = changed_rows(dump(before), dump(after))
    assert (change["public.a"].rows, change["public.a"].among_old) == (2, 1)
    assert (change["public.b"].rows, change["public.b"].among_old) == (1, 1)
    assert change["public.a"].bytes == len(after["a"][100]) + len(after["a"][-1]) + 2


def test_the_day_of_changes_states_its_shares():
    sql = change_sql(3, append=0.02, newest=0.005, oldest=0.001, accounts=0.02)
    assert "count(*) / 50 FROM docs" in sql and "count(*) / 200 FROM docs" in sql and "count(*) / 1000 FROM docs" in sql
    assert "random() < 0.02" in sql and "setseed(0.03)" in sql
    assert sql.rstrip().endswith("VACUUM;")


def test_new_rows_are_shaped_like_the_built_ones_unless_asked_for_smaller():
    shaped, smaller = change_sql(2), change_sql(2, smaller_rows=True)
    assert DOC_ROW in shaped and "generate_series((SELECT max(id) + 1 FROM docs)" in shaped  # ids and md5 refs go on
    assert DOC_ROW not in smaller and "'tags'" not in smaller and "generate_series(1," in smaller
