"""Splitting pg_dump's plain script into sections (backup_svc/files/parallel/script.py, lexer.py): what
goes where, whatever the chunk boundaries, with names and bodies that look like pg_dump's comments."""

from __future__ import annotations

import pytest

from backup_svc.files.parallel import script
from backup_svc.files.parallel.lexer import StatementLexer
from backup_svc.files.parallel.script import NotSplittable, ScriptSplitter


class Recorder:
    """A sink that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def split(sql: bytes, chunk: int) -> tuple[list[tuple], ScriptSplitter]:
    sink = Recorder()
    splitter = ScriptSplitter(sink)
    for i in range(0, len(sql), chunk):
        splitter.feed(sql[i : i + chunk])
    splitter.finish()
    return sink.calls, splitter


DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict abc123

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$
SELECT 1;
--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -
--
SELECT 'x'; $$;

--
-- Name: weird
name; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public."weird
name" (id int, v text);

--
-- Data for Name: weird name; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public."weird
name" (id, v) FROM stdin;
1\ta
2\t\\\\.
\\.


--
-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.s', 5, true);


--
-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -
--

BEGIN;
SELECT pg_catalog.lowrite(0, '\\x61');
COMMIT;

SET default_tablespace = fast;

--
-- Name: weird name weird_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public."weird
name"
    ADD CONSTRAINT weird_pkey PRIMARY KEY (id);

SET default_tablespace = '';

--
-- Name: i; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX i ON public."weird
name" USING btree (v);

--
-- Name: i; Type: INDEX ATTACH; Schema: public; Owner: -
--

ALTER INDEX public.p ATTACH PARTITION public.i;

--
-- Name: j; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX j ON public.t USING btree (v);

--
-- PostgreSQL database dump complete
--

\\unrestrict abc123

"""


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_the_sections_of_a_dump(chunk):
    calls, splitter = split(DUMP, chunk)
    assert splitter.restrict == b"\\restrict abc123"
    pre = b"".join(c[1] for c in calls if c[0] == "pre_data")
    assert pre.startswith(b"--\n-- PostgreSQL database dump") and b"SET client_encoding" in pre
    assert b"SELECT 'x'; $$;" in pre and b'CREATE TABLE public."weird\nname"' in pre  # the header in $$ is no boundary
    names = [c[0] for c in calls if c[0] != "pre_data" and c[0] != "large_objects"]
    assert names[:2] == ["data_begins", "copy_rows"]
    copy = next(c for c in calls if c[0] == "copy_rows")
    assert copy[2] == b'COPY public."weird\nname" (id, v) FROM stdin;'
    assert b"".join(copy[3]) == b"1\ta\n2\t\\\\.\n"  # an escaped backslash-dot is a row, not the end
    settings = copy[4]
    assert b"SET client_encoding = 'UTF8';" in settings and b"SET statement_timeout = 0;" in settings
    lo = b"".join(c[1] for c in calls if c[0] == "large_objects")
    assert lo.count(b"BEGIN;") == 1 and b"lowrite" in lo and b"COMMIT;" in lo
    parallel = [c for c in calls if c[0] == "parallel"]
    assert [c[1] for c in parallel] == ["constraint public.weird name weird_pkey", "index public.i"]
    assert b"SET default_tablespace = fast;" in parallel[0][3]  # the setting before its header
    assert b"SET default_tablespace = '';" in parallel[1][3]
    serial = [c[1] for c in calls if c[0] == "serial"]
    assert b"setval" in serial[0] and b"ATTACH PARTITION" in serial[1]
    assert b"CREATE INDEX j" in serial[2]  # after something it cannot prove independent: in order
    assert serial[-1] == b"\\unrestrict abc123\n"
    order = [c[0] for c in calls if c[0] in ("data_begins", "post_data_begins")]
    assert order == ["data_begins", "post_data_begins"]


def test_a_big_table_goes_out_in_jobs_that_end_at_a_row(monkeypatch):
    monkeypatch.setattr(script, "JOB_BYTES", 100)
    rows = b"".join(b"%d\t%s\n" % (i, b"x" * (i % 17)) for i in range(200))
    sql = (
        b"--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\nCOPY public.t (a, b) FROM stdin;\n"
        + rows
        + b"\\.\n\n--\n-- PostgreSQL database dump complete\n--\n"
    )
    for chunk in (3, 50, 99):  # chunks (1 MiB) are smaller than jobs (4 MiB), as when restoring
        calls, _ = split(sql, chunk)
        jobs = [b"".join(c[3]) for c in calls if c[0] == "copy_rows"]
        assert len(jobs) > 10 and b"".join(jobs) == rows
        assert all(job.endswith(b"\n") for job in jobs)


def test_a_statement_keeps_its_own_blank_and_comment_like_lines():
    """Only the comments around an entry's statement are left out; a string inside it keeps its lines."""
    sql = (
        b"--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
        b'COPY public."a\n\n-- b" (x) FROM stdin;\n1\n\\.\n\n'
        b"--\n-- Name: i; Type: INDEX; Schema: public; Owner: -\n--\n\n"
        b"CREATE INDEX i ON public.t USING btree (x) WHERE (y <> 'p\n\n-- q\n'::text);\n\n"
    )
    calls, _ = split(sql, 1 << 20)
    assert next(c for c in calls if c[0] == "copy_rows")[2] == b'COPY public."a\n\n-- b" (x) FROM stdin;'
    assert next(c for c in calls if c[0] == "parallel")[2] == (
        b"CREATE INDEX i ON public.t USING btree (x) WHERE (y <> 'p\n\n-- q\n'::text);"
    )


def test_table_data_that_is_not_copy_is_refused():
    sql = (
        b"--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\nINSERT INTO public.t VALUES (1);\n"
    )
    with pytest.raises(NotSplittable, match="--inserts"):
        split(sql, 1 << 20)


@pytest.mark.parametrize(
    "lines, boundary",
    [
        ([b"SELECT 'it''s';"], True),
        ([b"SELECT E'a\\'; -- still a string", b"';"], True),
        ([b"SELECT 'open"], False),
        ([b'CREATE TABLE "a;', b'b" (x int);'], True),
        ([b"CREATE FUNCTION f() AS $x$ ; $y$ ;", b"$x$;"], True),
        ([b"CREATE FUNCTION f() AS $x$ ; "], False),
        ([b"SELECT a$b$c;"], True),  # a $ inside an identifier is no dollar quote
        ([b"/* a /* nested */ comment", b"*/ SELECT 1;"], True),
        ([b"SELECT 1 -- ; comment"], False),
    ],
)
def test_the_lexer_finds_statement_ends(lines, boundary):
    lexer = StatementLexer()
    for line in lines:
        lexer.line(line)
    assert lexer.at_boundary is boundary


PG18_STATISTICS = b"""SET client_encoding = 'UTF8';

--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.t (a) FROM stdin;
1
\\.


--
-- Statistics for Name: t; Type: STATISTICS DATA; Schema: public; Owner: -
--

SELECT * FROM pg_catalog.pg_restore_relation_stats(
\t'version', '180006'::integer,
\t'relname', 't'
);


--
-- Name: i; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX i ON public.t USING btree (a);


--
-- Statistics for Name: i; Type: STATISTICS DATA; Schema: public; Owner: -
--

SELECT * FROM pg_catalog.pg_restore_relation_stats(
\t'version', '180006'::integer,
\t'relname', 'i'
);

"""


@pytest.mark.parametrize("chunk", [5, 1 << 20])
def test_pg18_statistics_entries_run_after_the_indexes(chunk):
    """pg_dump 18's `--statistics` heads its entries `-- Statistics for Name:`; one right after the last
    table's data used to be glued to that table's entry and refused ("statements after the table data")."""
    calls, _ = split(PG18_STATISTICS, chunk)
    assert b"".join(next(c for c in calls if c[0] == "copy_rows")[3]) == b"1\n"
    assert [c[1] for c in calls if c[0] == "parallel"] == ["index public.i"]
    serial = [c[1] for c in calls if c[0] == "serial"]
    assert len(serial) == 2 and all(b"pg_restore_relation_stats" in text for text in serial)
    assert b"'relname', 't'" in serial[0] and b"'relname', 'i'" in serial[1]
    names = [c[0] for c in calls if c[0] in ("copy_rows", "post_data_begins", "parallel", "serial")]
    assert names == ["copy_rows", "serial", "post_data_begins", "parallel", "serial"]


def test_table_data_under_an_ambiguous_header_is_refused_before_a_row_runs_as_sql():
    """A table named `x; Type: INDEX; Schema: y` makes its data header ambiguous. Its rows were read
    as SQL: a row shaped like an index entry ran as an index build on the restoring role's session."""
    sql = (
        b"--\n-- Data for Name: x; Type: INDEX; Schema: y; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
        b'COPY public."x; Type: INDEX; Schema: y" (v) FROM stdin;\n'
        b"-- Name: evil; Type: INDEX; Schema: public; Owner: -\n"
        b"CREATE INDEX evil ON public.t (a);\n"
        b"\\.\n\n"
    )
    for chunk in (7, 1 << 20):
        sink = Recorder()
        splitter = ScriptSplitter(sink)
        with pytest.raises(NotSplittable, match="ambiguous"):
            for i in range(0, len(sql), chunk):
                splitter.feed(sql[i : i + chunk])
            splitter.finish()
        assert not [c for c in sink.calls if c[0] in ("parallel", "serial", "copy_rows")]


@pytest.mark.parametrize("first", [True, False])
def test_an_ambiguous_header_after_the_data_ends_the_parallel_run(first):
    """What an entry is cannot be told from an ambiguous header, not even which section it starts (the
    first post-data entry): what follows it runs in dump order."""
    index_i = (
        b"--\n-- Name: i; Type: INDEX; Schema: public; Owner: -\n--\n\nCREATE INDEX i ON public.t USING btree (a);\n\n"
    )
    sql = (
        b"--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: -\n--\n\nCOPY public.t (a) FROM stdin;\n1\n\\.\n\n"
        + (b"" if first else index_i)
        + b"--\n-- Name: r; Type: INDEX; Schema: s; Type: RULE; Schema: public; Owner: -\n--\n\n"
        b"CREATE RULE r AS ON INSERT TO public.t DO INSTEAD NOTHING;\n\n"
        b"--\n-- Name: j; Type: INDEX; Schema: public; Owner: -\n--\n\nCREATE INDEX j ON public.t USING btree (a);\n\n"
    )
    calls, _ = split(sql, 1 << 20)
    assert [c[1] for c in calls if c[0] == "parallel"] == ([] if first else ["index public.i"])
    serial = [c[1] for c in calls if c[0] == "serial"]
    assert b"CREATE RULE r" in serial[0] and b"CREATE INDEX j" in serial[1]


def test_each_header_goes_out_once():
    calls, _ = split(DUMP, 1 << 20)
    pre = b"".join(c[1] for c in calls if c[0] == "pre_data")
    assert pre.count(b"-- Name: f(); Type: FUNCTION; Schema: public; Owner: -") == 1
    serial = b"".join(c[1] for c in calls if c[0] == "serial")
    assert serial.count(b"-- Name: i; Type: INDEX ATTACH; Schema: public; Owner: -") == 1


def test_large_objects_start_with_the_settings_of_their_own_entry():
    """The large-object session's first SETs are those in force at the BLOBS entry, not those of the
    entry after it when both arrive in one chunk."""
    sql = (
        b"SET search_path = a;\n\n"
        b"--\n-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -\n--\n\n"
        b"BEGIN;\nSELECT pg_catalog.lowrite(0, '\\x61');\nCOMMIT;\n\n"
        b"SET search_path = b;\n\n"
        b"--\n-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: -\n--\n\n"
        b"SELECT pg_catalog.setval('public.s', 5, true);\n\n"
    )
    calls, _ = split(sql, 1 << 20)
    lo = [c for c in calls if c[0] == "large_objects"]
    assert lo and all(c[2] == (b"SET search_path = a;",) for c in lo)
