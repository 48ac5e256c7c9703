"""Issue 25, item 3: `restore FILE --create --jobs N` — the plain dump split into its sections and
restored on N connections gives the database the serial restore gives, and any failure anywhere (a
COPY on one connection, a session killed, a damaged file, Ctrl-C) leaves no new database behind.
Real PostgreSQL, the real command line, dumps written by `dump`."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest

from tests.databases import DATA, snapshot
from tests.processes import restore_cli, run_cli, wait_until
from tests.s3support import s3_env

# What the rich fixture lacks of a real schema's shapes: foreign keys (to a table whose primary key
# is built in parallel), a partitioned table with a primary key and an index on the parent, comments
# on an index and a constraint, a table named with a newline and quotes, an index in a function-free
# expression, a function whose body holds a line that looks like pg_dump's data header, and a table
# whose rows fill more than one job (4 MiB) so that several connections load it.
EXTRA = r'''
CREATE TABLE app."weird
name ""q""" (id int PRIMARY KEY, v text);
INSERT INTO app."weird
name ""q""" VALUES (1, 'a'), (2, E'b\nc'), (3, E'\\.');
CREATE TABLE app.orders (id int PRIMARY KEY, person bigint NOT NULL REFERENCES app.people (id), total numeric);
INSERT INTO app.orders SELECT g, 1 + g % 2000, g * 1.5 FROM generate_series(1, 3000) g;
CREATE INDEX orders_person ON app.orders (person);
COMMENT ON INDEX app.orders_person IS 'for the foreign key';
COMMENT ON CONSTRAINT orders_pkey ON app.orders IS 'the key';
CREATE TABLE app.lines (order_id int REFERENCES app.orders (id) ON DELETE CASCADE, n int, PRIMARY KEY (order_id, n));
INSERT INTO app.lines SELECT 1 + g % 3000, g FROM generate_series(1, 6000) g;
ALTER TABLE app.events ADD PRIMARY KEY (id, at);
CREATE INDEX events_payload ON app.events (lower(payload));
CREATE TABLE app.wide (id int PRIMARY KEY, pad text);
INSERT INTO app.wide SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 80000) g;
CREATE FUNCTION app.tricky() RETURNS text LANGUAGE sql AS $body$
SELECT 'x'
--
-- Data for Name: wide; Type: TABLE DATA; Schema: app; Owner: -
--
$body$;
CREATE TABLE app.notes (id int PRIMARY KEY, body text DEFAULT E'a;\n--\n-- Data for Name: notes; Type: TABLE DATA; Schema: app; Owner: -\n--\n'
    CHECK (body <> E'x;\n-- Name: fake; Type: INDEX; Schema: app; Owner: -\n'));
INSERT INTO app.notes (id) VALUES (1);
COMMENT ON INDEX app.orders_person IS E'for the foreign key;\n--\n-- Name: fake; Type: FK CONSTRAINT; Schema: app; Owner: -\n--\n';
'''


def databases(pg_cluster, name: str) -> list[str]:
    with pg_cluster.connect() as db:
        return [r[0] for r in db.execute("SELECT datname FROM pg_database WHERE datname = %s", (name,))]


def drop(pg_cluster, *names: str) -> None:
    with pg_cluster.connect() as db:
        for name in names:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore(pg_cluster, backup, name: str, *extra: str) -> subprocess.CompletedProcess:
    drop(pg_cluster, name)
    return run_cli("restore", str(backup), "--target-url", pg_cluster.url(name), "--create", *extra)


@pytest.fixture(scope="module")
def shapes(pg_cluster, tmp_path_factory):
    """A dump (by `dump`) of the rich database plus EXTRA."""
    sql = (DATA / "rich.sql").read_text() + EXTRA
    url = pg_cluster.create_database("jobs_shapes", sql)
    path = tmp_path_factory.mktemp("jobs") / "shapes.sql.gz"
    result = run_cli("dump", "-o", str(path), env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    yield path
    drop(pg_cluster, "jobs_shapes")


@pytest.fixture(scope="module")
def bulk(pg_cluster, tmp_path_factory):
    """A dump whose restore lasts long enough (~50 MB of rows, several indexes) to be cut short."""
    url = pg_cluster.create_database(
        "jobs_bulk",
        """
        CREATE TABLE t (id int PRIMARY KEY, pad text);
        INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 500000) g;
        CREATE INDEX t_pad ON t (pad);
        CREATE TABLE u (id int PRIMARY KEY, t_id int REFERENCES t (id));
        INSERT INTO u SELECT g, g FROM generate_series(1, 200000) g;
    """,
    )
    path = tmp_path_factory.mktemp("jobs") / "bulk.sql.gz"
    result = run_cli("dump", "-o", str(path), env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    yield path
    drop(pg_cluster, "jobs_bulk")


@pytest.mark.parametrize("jobs", ["2", "3"])
def test_a_parallel_restore_gives_what_the_serial_one_gives(shapes, pg_cluster, jobs):
    sql = gzip.decompress(shapes.read_bytes())
    assert sql.count(b"\n\\restrict ") == 1 and b"\n\\unrestrict " in sql  # pg_dump 15.14+'s guard
    # header-looking lines inside a string default, a CHECK, a comment and a function body, on lines of their own
    assert sql.count(b"\n-- Data for Name: notes; Type: TABLE DATA; Schema: app; Owner: -\n") == 2
    assert b"\n-- Name: fake; Type: INDEX;" in sql and b"\n-- Name: fake; Type: FK CONSTRAINT;" in sql
    serial = restore(pg_cluster, shapes, "jobs_serial")
    assert serial.returncode == 0, serial.stderr
    parallel = restore(pg_cluster, shapes, "jobs_parallel", "--jobs", jobs)
    assert parallel.returncode == 0, parallel.stderr
    assert f"on {jobs} connections" in parallel.stderr
    loaded = next(line for line in parallel.stderr.splitlines() if "COPY jobs" in line)
    assert int(loaded.split(" COPY jobs")[0].split()[-1]) > 9, loaded  # app.wide was loaded in several jobs
    expected, got = snapshot(pg_cluster, "jobs_serial"), snapshot(pg_cluster, "jobs_parallel")
    assert got["rows"] == expected["rows"]
    assert got["sequences"] == expected["sequences"] and got["large_objects"] == expected["large_objects"]
    assert got["schema"] == expected["schema"]  # indexes, constraints, FKs, comments, partitions
    assert len(expected["large_objects"]) == 2 and any("weird" in table for table in expected["rows"])
    with pg_cluster.connect("jobs_parallel") as db:  # the foreign keys hold and are enforced
        assert db.execute("SELECT count(*) FROM app.lines").fetchone()[0] == 6000
        with pytest.raises(Exception, match="foreign key"):
            db.execute("INSERT INTO app.orders VALUES (999999, 424242, 1)")
    drop(pg_cluster, "jobs_serial", "jobs_parallel")


def _first_row_changed(sql: bytes, copy: bytes, change: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """`sql` with the fields of the first row after the statement starting `copy` replaced by `change`."""
    row = sql.index(b"\n", sql.index(copy)) + 1
    end = sql.index(b"\n", row)
    return sql[:row] + b"\t".join(change(sql[row:end].split(b"\t"))) + sql[end:]


def _break_a_row(sql: bytes) -> bytes:
    """One row of app.orders (loaded on some connection) with a total that is not a number."""
    return _first_row_changed(sql, b"COPY app.orders ", lambda fields: [*fields[:-1], b"not-a-number"])


def test_a_copy_that_fails_on_one_connection_leaves_no_database(shapes, pg_cluster, tmp_path):
    broken = tmp_path / "broken.sql.gz"
    broken.write_bytes(gzip.compress(_break_a_row(gzip.decompress(shapes.read_bytes()))))
    result = restore(pg_cluster, broken, "jobs_broken", "--jobs", "2")
    assert result.returncode == 1, result.stderr
    assert "restore failed: the COPY of app.orders failed on connection" in result.stderr, result.stderr
    assert "not-a-number" in result.stderr and "Traceback" not in result.stderr
    assert "dropped database 'jobs_broken'" in result.stderr
    assert databases(pg_cluster, "jobs_broken") == []


def test_a_truncated_file_leaves_no_database(bulk, pg_cluster, tmp_path):
    data = bulk.read_bytes()
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(data[: len(data) * 3 // 4])
    result = restore(pg_cluster, cut, "jobs_cut", "--jobs", "2")
    assert result.returncode == 1, result.stderr
    assert f"restore refused: {cut}: truncated" in result.stderr, result.stderr
    assert "table data loaded" not in result.stderr  # it stopped inside the data
    assert "dropped database 'jobs_cut'" in result.stderr and "Traceback" not in result.stderr
    assert databases(pg_cluster, "jobs_cut") == []


def _start(pg_cluster, source, name: str, jobs: str = "2", env: dict[str, str] | None = None) -> subprocess.Popen:
    """`restore SOURCE --target-url … --create --jobs N` (SOURCE a file or s3://…), left running."""
    drop(pg_cluster, name)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backup_svc",
            "restore",
            str(source),
            "--target-url",
            pg_cluster.url(name),
            "--create",
            "--jobs",
            jobs,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _copy_sessions(pg_cluster, name: str) -> list[int]:
    with pg_cluster.connect() as db:
        return [
            pid
            for (pid,) in db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY%%' "
                "AND application_name = 'backup_svc-restore'",
                (name,),
            )
        ]


def test_a_session_killed_mid_restore_leaves_no_database(bulk, pg_cluster):
    proc = _start(pg_cluster, bulk, "jobs_killed")
    try:
        sessions = wait_until(lambda: _copy_sessions(pg_cluster, "jobs_killed"), timeout_s=60, interval=0.02)
        assert sessions, "no COPY session appeared"
        with pg_cluster.connect() as db:
            db.execute("SELECT pg_terminate_backend(%s)", (sessions[0],))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    assert "restore failed:" in stderr and "failed on connection" in stderr, stderr
    assert "Traceback" not in stderr and "dropped database 'jobs_killed'" in stderr
    assert databases(pg_cluster, "jobs_killed") == []


@pytest.mark.parametrize("sent, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_mid_restore_leaves_no_database(bulk, pg_cluster, sent, status):
    proc = _start(pg_cluster, bulk, "jobs_interrupted")
    try:
        assert wait_until(lambda: _copy_sessions(pg_cluster, "jobs_interrupted"), timeout_s=60, interval=0.02)
        proc.send_signal(sent)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and "dropped database 'jobs_interrupted'" in stderr, stderr
    assert "every connection was stopped" in stderr
    assert databases(pg_cluster, "jobs_interrupted") == []


@pytest.mark.parametrize(
    "sent, status, jobs, stopped",
    [
        (signal.SIGTERM, 143, "1", "psql was stopped before it could commit"),
        (signal.SIGTERM, 143, "2", "every connection was stopped"),
        (signal.SIGINT, 130, "2", "every connection was stopped"),
    ],
    ids=["sigterm", "sigterm-jobs", "ctrl-c-jobs"],
)
def test_sigterm_or_ctrl_c_mid_restore_from_the_bucket_leaves_no_database(
    bulk, pg_cluster, s3, moto_s3, sent, status, jobs, stopped
):
    """`restore s3://… --create` stopped while psql (or the N connections) load the data: as for a file,
    nothing is committed, the database --create made is dropped, and the line says what was stopped."""
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="db/bulk.sql.gz", Body=bulk.read_bytes())
    name = "jobs_stored_stopped"
    proc = _start(pg_cluster, f"s3://{bucket}/db/bulk.sql.gz", name, jobs, env=s3_env(moto_s3.endpoint))
    try:
        assert wait_until(lambda: _copy_sessions(pg_cluster, name), timeout_s=60, interval=0.02), "no COPY began"
        proc.send_signal(sent)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    stopping = "stopped by SIGTERM" if sent == signal.SIGTERM else "interrupted"
    assert f"backup_svc: restore {stopping}; {stopped}\n" in stderr, stderr
    assert "Traceback" not in stderr and f"dropped database '{name}'" in stderr, stderr
    assert databases(pg_cluster, name) == []


def test_jobs_into_an_existing_database_stays_serial(shapes, pg_cluster):
    drop(pg_cluster, "jobs_existing")
    pg_cluster.create_database("jobs_existing")
    result = run_cli("restore", str(shapes), "--target-url", pg_cluster.url("jobs_existing"), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert "stays serial, in one transaction" in result.stderr and "COPY jobs" not in result.stderr
    drop(pg_cluster, "jobs_existing")


def test_jobs_is_refused_with_replace(pg_cluster):
    result = run_cli(
        "restore", "x.sql.gz", "--replace", "--jobs", "2", env={"DATABASE_URL": pg_cluster.url("postgres")}
    )
    assert result.returncode == 2 and "--jobs goes with" in result.stderr, result.stderr


def test_a_dump_without_table_data_runs_whole_in_one_session(pg_cluster, fresh_db, tmp_path):
    """No table data, no data section: the script never leaves the first (single-transaction) session."""
    name, url = fresh_db(
        "jobs_nodata",
        "CREATE TYPE mood AS ENUM ('ok'); CREATE VIEW v AS SELECT 'ok'::mood AS m; "
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
    )
    path = tmp_path / "nodata.sql.gz"
    assert run_cli("dump", "-o", str(path), env={"DATABASE_URL": url}).returncode == 0
    result = restore(pg_cluster, path, "jobs_nodata_restored", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert "table data loaded" not in result.stderr and "schema restored" in result.stderr
    # nor a session after it: no connections for index builds, no session for the statements after them
    assert "built on" not in result.stderr and "further statements" not in result.stderr, result.stderr
    assert snapshot(pg_cluster, "jobs_nodata_restored") == snapshot(pg_cluster, name)
    drop(pg_cluster, "jobs_nodata_restored")


def test_a_stored_object_restores_on_n_connections(shapes, pg_cluster, s3, moto_s3):
    """`restore s3://… --create --jobs 2`: the object's sha256 is checked first (a full pass), then the
    parallel restore reads it again."""
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="db/shapes.sql.gz", Body=shapes.read_bytes())
    drop(pg_cluster, "jobs_stored")
    result = restore_cli(
        f"s3://{bucket}/db/shapes.sql.gz",
        pg_cluster.url("jobs_stored"),
        "--create",
        "--jobs",
        "2",
        env=s3_env(moto_s3.endpoint),
    )
    assert result.returncode == 0, result.stderr
    assert "on 2 connections" in result.stderr and "COPY jobs" in result.stderr
    with pg_cluster.connect("jobs_stored") as db:
        assert db.execute("SELECT count(*) FROM app.wide").fetchone()[0] == 80000
    drop(pg_cluster, "jobs_stored")


def test_the_bench_schema_restores_the_same_on_two_connections(pg_cluster, tmp_path):
    """The benchmark's database (pgbench's tables with their foreign keys, a `docs` table with an
    identity column, jsonb and bytea), at pgbench scale 1: what `bench.restore_cli` times, here with
    --jobs 2 (the restore says it loaded the data on 2 connections)."""
    from bench.dataset import DB, build

    build(pg_cluster, 1_000_000)
    path = tmp_path / "bench.sql.gz"
    assert run_cli("dump", "-o", str(path), env={"DATABASE_URL": pg_cluster.url(DB)}).returncode == 0
    parallel = restore(pg_cluster, path, "jobs_bench", "--jobs", "2")
    assert parallel.returncode == 0, parallel.stderr
    assert "table data loaded on 2 connections" in parallel.stderr, parallel.stderr
    with pg_cluster.connect("jobs_bench") as db:  # pgbench --foreign-keys: 5
        assert db.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == 5
    assert snapshot(pg_cluster, "jobs_bench") == snapshot(pg_cluster, DB)
    drop(pg_cluster, "jobs_bench", DB)


def _orphan_a_line(sql: bytes) -> bytes:
    """One row of app.lines pointing at an order that does not exist: its foreign key, added in the
    last step (after the data and the index builds), fails there."""
    return _first_row_changed(sql, b"COPY app.lines ", lambda fields: [b"987654", *fields[1:]])


def test_a_failure_in_the_last_step_signals_no_psql_that_has_ended(shapes, pg_cluster, tmp_path, monkeypatch):
    """The abort stops what still runs, and sends no signal to a psql that has ended: once waited for,
    its pid (the id of its process group) may be another process's. The schema's psql ended long before
    this failure. The spy on os.killpg passes every call on; it only notes one aimed at no process."""
    from backup_svc.files.psqlfeed import RestoreFailed
    from backup_svc.files.restore import restore_file

    broken = tmp_path / "orphan.sql.gz"
    broken.write_bytes(gzip.compress(_orphan_a_line(gzip.decompress(shapes.read_bytes()))))
    gone: list[int] = []
    real_killpg = os.killpg

    def killpg(pgid: int, sent: int) -> None:
        try:
            real_killpg(pgid, 0)
        except ProcessLookupError:
            gone.append(pgid)
        real_killpg(pgid, sent)

    monkeypatch.setattr(os, "killpg", killpg)
    drop(pg_cluster, "jobs_orphan")
    said: list[str] = []
    with pytest.raises(RestoreFailed, match="lines_order_id_fkey"):
        restore_file(
            str(broken),
            pg_cluster.url("jobs_orphan"),
            bin_dirs=[pg_cluster.bin_dir],
            create=True,
            jobs=2,
            say=said.append,
        )
    assert any("table data loaded on 2 connections" in line for line in said), said
    assert gone == []
    assert databases(pg_cluster, "jobs_orphan") == []


def test_the_connections_outlive_an_idle_session_timeout(pg_cluster):
    """The pool's connections wait idle while large objects stream through their own psql; a database
    whose idle_session_timeout is shorter than that wait must not end them (a real server's timeout)."""
    from backup_svc.files.parallel.pool import Job, WorkerPool
    from backup_svc.pg.conninfo import parse_database_url

    drop(pg_cluster, "jobs_idle")
    with pg_cluster.connect() as db:
        db.execute("CREATE DATABASE jobs_idle")
        db.execute("ALTER DATABASE jobs_idle SET idle_session_timeout = '300ms'")
    pool = WorkerPool(parse_database_url(pg_cluster.url("jobs_idle")), 2)
    try:
        time.sleep(1.5)  # longer than the timeout, as a long stream of large objects
        for n in range(4):
            pool.submit(Job(f"table {n}", f"CREATE TABLE t{n} (a int)".encode(), None, ()))
        pool.wait_done()
    finally:
        pool.close()
    with pg_cluster.connect("jobs_idle") as db:
        assert db.execute("SELECT count(*) FROM pg_class WHERE relname ~ '^t[0-3]$'").fetchone()[0] == 4
    drop(pg_cluster, "jobs_idle")


def test_a_cancel_is_heard_while_the_indexes_build(pg_cluster, fresh_db, tmp_path):
    """The dashboard's cancel is checked by `watch`: after the last chunk of the file it must still be
    heard while index builds run (here one that takes ~6 s: its expression sleeps 20 ms a row), not
    only once they and the last step are done. The restore then stops at once, with nothing running."""
    from backup_svc.files.parallel.restore import restore_in_parallel
    from backup_svc.pg.conninfo import parse_database_url

    _, url = fresh_db(
        "jobs_slow_src",
        """
        CREATE FUNCTION public.slow(i int) RETURNS int IMMUTABLE LANGUAGE sql
            AS 'SELECT i FROM pg_catalog.pg_sleep(0.02)';
        CREATE TABLE public.t (id int PRIMARY KEY, v int);
        INSERT INTO public.t SELECT g, g FROM generate_series(1, 300) g;
        CREATE INDEX t_slow ON public.t (public.slow(v));
        """,
    )
    path = tmp_path / "slow.sql.gz"
    assert run_cli("dump", "-o", str(path), env={"DATABASE_URL": url}).returncode == 0
    drop(pg_cluster, "jobs_cancel")
    with pg_cluster.connect() as db:
        db.execute("CREATE DATABASE jobs_cancel")
        version = db.execute("SHOW server_version_num").fetchone()[0]

    class Cancelled(Exception):
        pass

    first_call: list[float] = []

    def watch(scanner) -> None:  # the file is one chunk: called once by the reading loop, then by the waits
        first_call.append(first_call[0] if first_call else time.monotonic())
        if time.monotonic() - first_call[0] > 1:
            raise Cancelled

    said: list[str] = []
    with pytest.raises(Cancelled):
        restore_in_parallel(
            str(path),
            parse_database_url(pg_cluster.url("jobs_cancel")),
            os.path.join(pg_cluster.bin_dir, "psql"),
            int(version),
            2,
            say=said.append,
            watch=watch,
        )
    assert time.monotonic() - first_call[0] < 3, said
    assert not any("indexes and constraints built" in line for line in said), said
    with pg_cluster.connect() as db:
        running = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'jobs_cancel' AND state = 'active'"
        ).fetchone()[0]
    assert running == 0
    drop(pg_cluster, "jobs_cancel")
