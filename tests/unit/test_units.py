"""Plain functions, tested without a server: URL parsing, choosing pg_dump, reading pg_dump's errors."""

from __future__ import annotations

import pytest

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.dump.invocation import pg_dump_command
from backup_svc.pg.binaries import IncompatibleServer, PgBinary, pick_binary
from backup_svc.pg.diagnose import (
    AUTH_FAILED,
    FAILED,
    INCOMPATIBLE,
    LOCKED,
    NO_DATABASE,
    NOT_ACCEPTING,
    NOT_ANSWERING,
    OUT_OF_LOCKS,
    PERMISSION,
    SSL_UNSUPPORTED,
    UNREACHABLE,
    diagnose,
)
from backup_svc.pg.scrub import scrub


@pytest.mark.parametrize(
    "url,uri,password,dbname",
    [
        ("postgres://u:p%40ss@h:5432/db", "postgresql://u@h:5432/db", "p@ss", "db"),
        ("postgresql://u:pw@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require", "pw", "db"),
        (
            "postgresql://u@h:6543/db?password=qp&sslmode=verify-full",
            "postgresql://u@h:6543/db?sslmode=verify-full",
            "qp",
            "db",
        ),
        ("postgresql://h/db", "postgresql://h/db", None, "db"),
        ("postgresql://[::1]:5432/db", "postgresql://[::1]:5432/db", None, "db"),
    ],
)
def test_parse_database_url_moves_password_out_of_the_uri(url, uri, password, dbname):
    conn = parse_database_url(url)
    assert (conn.uri, conn.password, conn.dbname) == (uri, password, dbname)


@pytest.mark.parametrize("url", ["mysql://h/db", "postgresql://h:99999/db", "postgresql://u:p@h:5432", "not a url"])
def test_parse_database_url_rejects(url):
    with pytest.raises(ValueError):
        parse_database_url(url)


def _bins(*majors):
    return [PgBinary(path=f"/pg/{m}/bin/pg_dump", version=f"{m}.1", major=m) for m in majors]


@pytest.mark.parametrize(
    "server,installed,chosen",
    [
        (150004, (14, 15, 17), 15),  # same major
        (160002, (14, 15, 17, 18), 17),  # else the lowest newer one
        (140010, (17, 18), 17),
        (90624, (14,), 14),
    ],
)
def test_pick_binary(server, installed, chosen):
    assert pick_binary(server, "x", _bins(*installed)).major == chosen


def test_pick_binary_names_versions_when_none_fits():
    with pytest.raises(IncompatibleServer) as exc:
        pick_binary(180001, "18.1", _bins(14, 15))
    assert "18.1" in str(exc.value) and "14.1, 15.1" in str(exc.value)


@pytest.mark.parametrize(
    "stderr,kind",
    [
        ('pg_dump: error: connection to server at "10.0.0.1", port 5432 failed: Connection refused', UNREACHABLE),
        ('pg_dump: error: could not translate host name "db" to address: Name or service not known', UNREACHABLE),
        (
            'pg_dump: error: connection to server at "h", port 5432 failed: FATAL:  password authentication failed '
            'for user "u"',
            AUTH_FAILED,
        ),
        ('pg_dump: error: connection to server at "h" failed: FATAL:  database "x" does not exist', NO_DATABASE),
        (
            "pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 18.1; "
            "pg_dump version: 15.18",
            INCOMPATIBLE,
        ),
        (
            "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout\n"
            "pg_dump: detail: Query was: LOCK TABLE public.t IN ACCESS SHARE MODE",
            LOCKED,
        ),
        ("pg_dump: error: query failed: ERROR:  permission denied for table t", PERMISSION),
        (
            "pg_dump: error: query failed: ERROR:  permission denied for table t\n"
            "pg_dump: detail: Query was: LOCK TABLE public.t IN ACCESS SHARE MODE",
            PERMISSION,
        ),
        (
            "pg_dump: error: query failed: ERROR:  out of shared memory\nHINT:  You might need to increase "
            "max_locks_per_transaction.\npg_dump: detail: Query was: LOCK TABLE public.t9999 IN ACCESS SHARE MODE",
            OUT_OF_LOCKS,
        ),
        (
            'pg_dump: error: connection to server at "h" failed: server does not support SSL, but SSL was required',
            SSL_UNSUPPORTED,
        ),
        ('pg_dump: error: connection to server at "h" failed: timeout expired', NOT_ANSWERING),
        (
            'connection to server at "h" (10.0.0.1), port 5432 failed: FATAL:  database "shop" is not currently accepting '
            "connections",
            NOT_ACCEPTING,
        ),
        ('connection to server at "h", port 5432 failed: FATAL:  the database system is starting up', NOT_ACCEPTING),
        (
            'connection to server at "h", port 5432 failed: FATAL:  the database system is not yet accepting connections\n'
            "DETAIL:  Consistent recovery state has not been yet reached.",
            NOT_ACCEPTING,
        ),
        ('connection to server at "h", port 5432 failed: FATAL:  sorry, too many clients already', NOT_ACCEPTING),
        (
            'connection to server at "h", port 5432 failed: FATAL:  remaining connection slots are reserved for roles with '
            "the SUPERUSER attribute",
            NOT_ACCEPTING,
        ),
        ("pg_dump: error: query failed: ERROR:  syntax error", FAILED),
    ],
)
def test_diagnose(stderr, kind):
    assert diagnose(stderr).kind == kind


def test_diagnose_scrubs_secrets():
    failure = diagnose(
        "pg_dump: error: connection to postgresql://u:hunter2hunter2@h/db failed: "
        "password=hunter2hunter2 timeout expired",
        "hunter2hunter2",
    )
    assert "hunter2" not in failure.message
    assert scrub("postgres://a:b@c/d password='x y'") == "postgres://a:***@c/d password=***"


def test_pg_dump_command_keeps_password_out_of_argv():
    conn = parse_database_url("postgresql://u:s3cret-pass@h:5432/db?sslmode=require")
    command = pg_dump_command(
        "/usr/bin/pg_dump", conn, application_name="backup_svc-x", lock_timeout_s=5, connect_timeout_s=3
    )
    assert not any("s3cret-pass" in arg for arg in command.argv)
    assert command.env["PGPASSWORD"] == "s3cret-pass"
    assert any(arg.startswith("--dbname=postgresql://u@h:5432/db?sslmode=require&keepalives=1") for arg in command.argv)
    for flag in ("--format=plain", "--no-owner", "--no-acl", "--clean", "--if-exists", "--lock-wait-timeout=5000"):
        assert flag in command.argv


def test_keepalives_are_added_unless_the_url_sets_them():
    from backup_svc.pg.command import keepalive_params, with_keepalives

    assert with_keepalives("postgresql://u@h/db") == (
        "postgresql://u@h/db?keepalives=1&keepalives_idle=30&"
        "keepalives_interval=10&keepalives_count=3&tcp_user_timeout=60000"
    )
    given = keepalive_params("postgresql://u@h/db?sslmode=require&keepalives_idle=5", client_major=11)
    assert given == {"keepalives": "1", "keepalives_interval": "10", "keepalives_count": "3"}


def test_child_environment_keeps_path_libpq_and_locale_only():
    from backup_svc.pg.command import child_environment

    env = child_environment(
        {
            "PATH": "/bin",
            "LC_ALL": "C.UTF-8",
            "PGPASSWORD": "p",
            "PGSSLROOTCERT": "/ca",
            "ADMIN_TOKEN": "t",
            "LINK_SECRET": "s",
            "AWS_SECRET_ACCESS_KEY": "k",
            "PG_BIN_DIRS": "/x",
            "DATABASE_URL": "postgresql://u:p@h/db",
        }
    )
    assert env == {"PATH": "/bin", "LC_ALL": "C.UTF-8", "PGPASSWORD": "p", "PGSSLROOTCERT": "/ca"}
