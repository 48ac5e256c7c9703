"""Each failure class says the truth, caused for real against a real PostgreSQL (issue 11): a role
without SELECT, a server out of lock slots, a backend terminated mid-stream, SSL and certificates."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.localcluster import UNPRIVILEGED_USER, LocalCluster, find_server_bin_dir
from tests.http_client import read_all
from tests.service_process import audit_records

READER_PASSWORD = "reader-password-0123456789"


def _own(*paths) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)


def test_permission_denied_names_table_role_and_grant(pg_cluster, start_service):
    pg_cluster.create_database(
        "guarded",
        """
        CREATE TABLE public.open_data (id int);
        CREATE TABLE public.secret (id int, payload text);
    """,
    )
    with pg_cluster.connect("guarded") as db:
        db.execute("DROP ROLE IF EXISTS reader")
        db.execute(f"CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'")
        db.execute("GRANT SELECT ON public.open_data TO reader")
    url = pg_cluster.url("guarded").replace(f"postgres:{pg_cluster.password}@", f"reader:{READER_PASSWORD}@")
    service = start_service(DATABASE_URL=url)

    reply = service.request("GET", "/api/v1/backup", service.auth())

    assert reply.status == 502
    assert "Retry-After" not in reply.headers
    message = reply.json()["message"]
    assert "role reader" in message and "public.secret" in message and "SELECT" in message, message
    assert "GRANT SELECT ON public.secret TO reader" in message
    assert "conflicting lock" not in message and READER_PASSWORD not in message


def test_out_of_lock_slots_names_the_setting_and_the_table_count(start_service, tmp_path):
    """A server whose lock table is far smaller than one lock per table (max_locks_per_transaction=10)."""
    small = LocalCluster(
        find_server_bin_dir(pg_bin_dirs(os.environ)),
        settings={"max_locks_per_transaction": "10", "max_connections": "10"},
    )
    with small:
        small.create_database("many")
        tables = 3000
        statements = "".join(f"CREATE TABLE t{n} (id int);\n" for n in range(tables))
        small.psql("many", statements)  # autocommit: one table (and lock) per transaction
        service = start_service(DATABASE_URL=small.url("many"))
        reply = service.request("GET", "/api/v1/backup", service.auth())
        service.stop()
    assert reply.status == 502, reply.body[:500]
    assert "Retry-After" not in reply.headers
    message = reply.json()["message"]
    assert "max_locks_per_transaction" in message and f"{tables} tables" in message, message
    assert "conflicting lock" not in message


def test_backend_terminated_mid_stream_says_the_server_ended_it(big_db, start_service, pg_cluster):
    service = start_service(DATABASE_URL=big_db)
    conn, resp = service.start_download(timeout=60)
    backup_id = resp.headers["X-Backup-Id"]
    resp.read(65536)
    with pg_cluster.connect() as db:
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%'"
        ).fetchall()
    assert killed == [(True,)]
    _, complete = read_all(resp)  # the service breaks the transfer
    conn.close()
    assert not complete
    records = audit_records(service, backup_id, 10)
    assert records[-1]["outcome"] == "failed"
    error = records[-1]["error"]
    assert "The server ended the backup's connection" in error and "Cannot reach" not in error, error
    # the dashboard's progress report says the same
    report = service.request("GET", f"/api/v1/backups/{backup_id}", service.auth()).json()
    assert "The server ended the backup's connection" in report["error"]


def test_ssl_required_but_not_offered(pg_cluster, rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db + "?sslmode=require")
    for path in ("/api/v1/backup", "/api/v1/database"):  # /readyz tells anonymous callers less
        reply = service.request("GET", path, service.auth())
        assert reply.status in (502, 503), (path, reply.status)
        message = reply.json()["message"]
        assert "does not accept SSL connections" in message and "Cannot reach" not in message, message
    assert service.request("GET", "/readyz").status == 503


@pytest.fixture(scope="module")
def ssl_cluster():
    """A PostgreSQL with SSL on, its certificate signed by a CA of the test's own; and an unrelated CA."""
    folder = Path(tempfile.mkdtemp(prefix="backup_svc-ssl-"))  # the server's user must reach the files
    os.chmod(folder, 0o755)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
        )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=db.internal",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
    )
    os.chmod(folder / "server.key", 0o600)
    _own(folder / "server.key", folder / "server.crt")
    cluster = LocalCluster(
        find_server_bin_dir(pg_bin_dirs(os.environ)),
        settings={"ssl": "on", "ssl_cert_file": str(folder / "server.crt"), "ssl_key_file": str(folder / "server.key")},
    )
    try:
        with cluster:
            cluster.create_database("tls", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
            yield cluster, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    "params,expected",
    [
        ("sslmode=verify-ca&sslrootcert={folder}/other-ca.crt", "certificate verify failed"),
        ("sslmode=verify-full&sslrootcert={folder}/ca.crt", "does not match host name"),
        ("sslmode=verify-ca&sslrootcert={folder}/missing.crt", "does not exist"),
    ],
)
def test_certificate_problems_have_their_own_message(ssl_cluster, start_service, params, expected):
    cluster, folder = ssl_cluster
    service = start_service(DATABASE_URL=cluster.url("tls") + "?" + params.format(folder=folder))
    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 502
    message = reply.json()["message"]
    assert "certificate check failed" in message and expected in message, message
    assert "Cannot reach" not in message and cluster.password not in message


def test_a_verified_certificate_backs_up(ssl_cluster, start_service):
    """The same server with the right CA: the SSL settings reach pg_dump too (a complete backup)."""
    cluster, folder = ssl_cluster
    service = start_service(DATABASE_URL=cluster.url("tls") + f"?sslmode=verify-ca&sslrootcert={folder}/ca.crt")
    reply = service.request("GET", "/api/v1/backup", service.auth())
    assert reply.status == 200 and reply.complete
