"""Names chosen by whoever can create tables or databases: they must not forge progress or break headers."""

from __future__ import annotations

import pytest

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.dump.invocation import pg_dump_command
from backup_svc.dump.pipeline import GzipDump
from backup_svc.dump.tabledata import TableDataScanner
from backup_svc.pg.binaries import choose_pg_dump, find_binaries
from backup_svc.pg.facts import server_facts
from tests.http_client import gzip_is_valid

# A table and a schema whose names, printed raw by pg_dump --verbose, read as two "dumping contents"
# lines each (names are cut at 63 bytes, so one forged line per name).
FORGING_NAME = 'x"\npg_dump: dumping contents of table "public.fake1'
FORGING_SCHEMA = 'y"\npg_dump: dumping contents of table "public.fake2'
_QUOTED = FORGING_NAME.replace('"', '""')
_SCHEMA = FORGING_SCHEMA.replace('"', '""')
HOSTILE_SQL = "\n".join(
    [
        "CREATE TABLE public.first (id int);",
        "INSERT INTO public.first VALUES (1);",
        # Column names and rows that look like COPY statements and COPY's end marker.
        f'CREATE TABLE public."{_QUOTED}" ("col ""q""" text, "COPY public.nope FROM stdin;" int);',
        f"INSERT INTO public.\"{_QUOTED}\" VALUES (E'COPY public.row_fake (a) FROM stdin;', 2), (E'\\\\.', 3), "
        "(E'a\\nb', 4);",
        "CREATE TABLE public.empty_cols ();",
        "CREATE TABLE public.last (id int);",
        "INSERT INTO public.last VALUES (1);",
        f'CREATE SCHEMA "{_SCHEMA}"; CREATE TABLE "{_SCHEMA}".t (id int); INSERT INTO "{_SCHEMA}".t VALUES (5);',
    ]
)
REAL_TABLES = ["public.first", f"public.{FORGING_NAME}", "public.empty_cols", "public.last", f"{FORGING_SCHEMA}.t"]


@pytest.fixture(scope="module")
def hostile_db(pg_cluster) -> str:
    """A database whose table names, column names and rows imitate pg_dump's own output."""
    return pg_cluster.create_database("hostile_names", HOSTILE_SQL)


def test_progress_names_the_real_tables_whatever_they_are_called(hostile_db, pg_cluster):
    """The pipeline's table list comes from the COPY statements, so a name with a newline counts once.

    Before, the stderr parser counted 7 tables of 5 (fake1 and fake2 besides the real ones).
    """
    conn = parse_database_url(hostile_db)
    facts = server_facts(conn, timeout_s=10)
    pg_dump = choose_pg_dump(facts, find_binaries("pg_dump", [pg_cluster.bin_dir]))
    dump = GzipDump(
        pg_dump_command(
            pg_dump.path, conn, application_name="backup_svc-test-names", lock_timeout_s=10, connect_timeout_s=10
        ),
        secrets=(conn.password,),
    )
    dump.start()
    try:
        body = b"".join(dump)
    finally:
        dump.close()
    assert gzip_is_valid(body)
    progress = dump.progress
    assert sorted(progress.tables) == sorted(REAL_TABLES)
    assert progress.tables_done == len(REAL_TABLES)
    assert progress.current_table is None and progress.outcome == "ok"


def test_download_progress_counts_each_table_once(hostile_db, start_service):
    service = start_service(DATABASE_URL=hostile_db)
    reply = service.request("GET", "/api/v1/backup?progress_id=hostile-names-01", service.auth())
    assert reply.status == 200 and gzip_is_valid(reply.body)
    report = service.request("GET", "/api/v1/backups/hostile-names-01", service.auth()).json()
    assert (report["state"], report["tables_done"], report["table_count"]) == ("done", 5, 5)


def _events(chunks: list[bytes]) -> list:
    events: list = []
    scanner = TableDataScanner(lambda name: events.append(name), lambda: events.append("end"))
    for chunk in chunks:
        scanner.feed(chunk)
    return events


SQL = (
    b'SET x = 1;\n\nCOPY public.t (id, "Na""me") FROM stdin;\n1\tCOPY public.u FROM stdin;\n\\\\.\n\\.\n\n'
    b'COPY public."e\nCOPY public.f FROM stdin;\n" (a) FROM stdin;\n\\.\nCOPY s.e  FROM stdin;\n\\.\n'
    b"CREATE INDEX i ON public.t (id);\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, len(SQL)])
def test_table_data_scanner_finds_every_copy_however_the_stream_is_cut(size):
    events = _events([SQL[i : i + size] for i in range(0, len(SQL), size)])
    assert events == ["public.t", "end", "public.e\nCOPY public.f FROM stdin;\n", "end", "s.e", "end"]


# -- names outside ASCII in the download's filename ------------------------------------------------
def _filenames(disposition: str) -> tuple[str, str | None]:
    """The ASCII `filename` and the decoded `filename*` of a Content-Disposition value."""
    import re
    from urllib.parse import unquote

    ascii_name = re.search(r'filename="([^"]*)"', disposition).group(1)
    extended = re.search(r"filename\*=UTF-8''(\S+)", disposition)
    return ascii_name, unquote(extended.group(1)) if extended else None


@pytest.fixture(scope="module")
def cyrillic_db(pg_cluster) -> str:
    return pg_cluster.create_database("база", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")


@pytest.mark.parametrize(
    "backup_name,prefix,fallback",
    [
        (None, "база", "database"),  # the database's own name
        ("café", "café", "cafe"),
        ("数据", "数据", "database"),
    ],
)
def test_a_name_outside_ascii_is_the_same_everywhere(
    cyrillic_db, start_service, tmp_path, backup_name, prefix, fallback
):
    """RFC 6266: an ASCII fallback plus filename*; before, gunicorn answered 500 and kept the slot taken."""
    from tests.processes import run_cli

    env = {"DATABASE_URL": cyrillic_db, **({"BACKUP_NAME": backup_name} if backup_name else {})}
    service = start_service(**env)
    for attempt in range(2):  # the second proves the first freed its slot
        reply = service.request("GET", f"/api/v1/backup?progress_id=name-check-{attempt:04d}", service.auth())
        assert reply.status == 200 and reply.complete and gzip_is_valid(reply.body)
    disposition = reply.headers["Content-Disposition"]
    assert disposition.isascii()
    ascii_name, name = _filenames(disposition)
    assert name.startswith(f"{prefix}_backup_") and name.endswith(".sql.gz")
    assert ascii_name == fallback + name[len(prefix) :]

    report = service.request("GET", "/api/v1/backups/name-check-0001", service.auth()).json()
    assert report["filename"] == name
    page = service.request("GET", "/", service.auth()).body.decode()
    assert f"{prefix}_backup_" in page

    cli_env = {k: v for k, v in service.env.items() if k not in ("PORT",)}
    result = run_cli("dump", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = [p.name for p in tmp_path.iterdir() if p.name.endswith(".sql.gz")]
    assert len(written) == 1 and written[0].startswith(f"{prefix}_backup_")
