"""`GET /api/v1/backup?encrypt=age` on the real gunicorn: the download age-encrypted to BACKUP_AGE_RECIPIENTS,
which Debian's `age` decrypts into the usual gzip; a broken dump still breaks the transfer."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess

import pytest

from tests.databases import restore, snapshot
from tests.service_process import curl_with_dump_killed


@pytest.fixture
def age_key(age_keys):
    """(the private key file, its public key)."""
    return age_keys["age"], age_keys["age_public"]


def test_an_encrypted_download_is_age_of_the_usual_gzip(start_service, rich_db, pg_cluster, age_key, tmp_path):
    key, public = age_key
    service = start_service(DATABASE_URL=rich_db, BACKUP_AGE_RECIPIENTS=public)
    reply = service.request("GET", "/api/v1/backup?encrypt=age&progress_id=encrypted-download-1", service.auth())
    assert reply.status == 200 and reply.complete
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert re.fullmatch(
        r'attachment; filename="rich_backup_\d{8}_\d{6}\.sql\.gz\.age"', reply.headers["Content-Disposition"]
    )
    assert reply.body.startswith(b"age-encryption.org/v1\n")
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=reply.body, capture_output=True)
    assert plain.returncode == 0, plain.stderr
    backup = tmp_path / "rich.sql.gz"
    backup.write_bytes(plain.stdout)
    gzip.decompress(plain.stdout)  # intact gzip inside
    restore(pg_cluster, backup, "rich_restored_encrypted_http")
    assert snapshot(pg_cluster, "rich_restored_encrypted_http") == snapshot(pg_cluster, "rich")
    # the progress report's sha256 is the saved file's (what `sha256sum` of the .age prints)
    report = service.request("GET", "/api/v1/backups/encrypted-download-1", service.auth()).json()
    assert report["sha256"] == hashlib.sha256(reply.body).hexdigest()
    assert report["filename"].endswith(".sql.gz.age")
    head = service.request("HEAD", "/api/v1/backup?encrypt=age", service.auth())
    assert head.status == 200 and head.headers["Content-Type"] == "application/octet-stream"


def test_encrypt_needs_recipients_and_knows_one_value(start_service, rich_db, age_key):
    plain = start_service(DATABASE_URL=rich_db)
    refused = plain.request("GET", "/api/v1/backup?encrypt=age", plain.auth())
    assert refused.status == 400 and "BACKUP_AGE_RECIPIENTS" in refused.json()["message"]
    encrypted = start_service(DATABASE_URL=rich_db, BACKUP_AGE_RECIPIENTS=age_key[1])
    odd = encrypted.request("GET", "/api/v1/backup?encrypt=gpg", encrypted.auth())
    assert odd.status == 400 and odd.json()["error"] == "Bad Request"
    # without the parameter, a service with recipients still serves the plain gzip download
    reply = encrypted.request("GET", "/api/v1/backup", encrypted.auth())
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/gzip"
    assert reply.body[:2] == b"\x1f\x8b"


def test_a_dump_that_breaks_mid_stream_breaks_the_encrypted_transfer(
    start_service, big_db, pg_cluster, age_key, tmp_path
):
    """No final chunk, and what arrived is an unfinished age file that `age -d` rejects."""
    from tests.processes import wait_until

    key, public = age_key
    service = start_service(DATABASE_URL=big_db, BACKUP_AGE_RECIPIENTS=public)
    out = tmp_path / "broken.sql.gz.age"
    rc = curl_with_dump_killed(service, pg_cluster, out, "/api/v1/backup?encrypt=age")
    assert rc != 0, "curl must see a broken transfer"
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert subprocess.run(["age", "-d", "-i", str(key), str(out)], capture_output=True).returncode != 0
    assert wait_until(lambda: "broken mid-stream" in service.log(), 5)


def test_stored_backups_taken_by_the_service_are_encrypted_listed_and_linked_without_the_key(
    start_service, s3, moto_s3, rich_db, age_key
):
    """`POST /api/v1/stored` on a service with recipients and no identity: the object is age, the list says
    so and to which key, and the presigned link hands out the encrypted file (decrypted on a laptop)."""
    import time
    import urllib.request

    from tests.s3support import object_keys, s3_env

    key, public = age_key
    client, bucket = s3
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/db/",
        BACKUP_AGE_RECIPIENTS=public,
        **s3_env(moto_s3.endpoint),
    )
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    progress_url = started.json()["progress_url"]
    deadline = time.monotonic() + 90
    while (report := service.request("GET", progress_url, service.auth()).json())["state"] == "running":
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
    assert report["state"] == "done", report
    (entry,) = service.request("GET", "/api/v1/stored", service.auth()).json()["backups"]
    assert entry["name"].endswith(".sql.gz.age") and entry["name"] == report["filename"]
    assert entry["encrypted"] is True and entry["recipients"] == [public] and entry["sql_bytes"] is None
    assert entry["sha256"] == report["sha256"]
    assert object_keys(client, bucket) == [f"db/{entry['name']}"]
    link = service.request("GET", f"/api/v1/stored/{entry['name']}", service.auth())
    assert link.status == 302
    with urllib.request.urlopen(link.headers["Location"], timeout=30) as response:
        body = response.read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] and body.startswith(b"age-encryption.org/v1\n")
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=body, capture_output=True)
    assert plain.returncode == 0 and b"-- PostgreSQL database dump complete" in gzip.decompress(plain.stdout)


def test_the_private_key_reaches_no_child_argv_environment_or_log(
    start_service, big_db, pg_cluster, age_keys, tmp_path
):
    """BACKUP_AGE_IDENTITY given as the key itself: pg_dump's argv and environment and the service's log
    never hold it (children get an allowlisted environment)."""
    from tests.processes import cmdline, environ_of, pg_dump_pids, wait_until

    secret = [line for line in age_keys["age"].read_text().splitlines() if line.startswith("AGE-SECRET-KEY-")][0]
    service = start_service(
        DATABASE_URL=big_db, BACKUP_AGE_RECIPIENTS=age_keys["age_public"], BACKUP_AGE_IDENTITY=secret
    )
    out = tmp_path / "slow.sql.gz.age"
    curl = subprocess.Popen(
        [
            "curl",
            "-fsS",
            "--limit-rate",
            "1M",
            "-o",
            str(out),
            "-H",
            f"Authorization: Bearer {service.token}",
            f"{service.base_url}/api/v1/backup?encrypt=age",
        ]
    )
    try:
        assert wait_until(lambda: pg_dump_pids(pg_cluster), 20)
        for pid in pg_dump_pids(pg_cluster):
            assert secret not in cmdline(pid)
            assert not any(secret in value for value in environ_of(pid).values())
    finally:
        curl.kill()
        curl.wait()
    assert secret not in service.log() and "AGE-SECRET-KEY" not in service.log()
