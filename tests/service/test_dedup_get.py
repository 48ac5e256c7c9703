"""A dedup backup as a `.sql.gz`: `get NAME -o FILE` and the dashboard's download (`GET /api/v1/stored/<manifest>`,
streamed through the service), against a real PostgreSQL, moto's S3 server and gunicorn on loopback."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess

from tests.s3support import s3_env
from tests.dedup_support import (
    restores_identical,
    SEVERAL_CHUNKS,
    dedup_env,
    manifest_of,
    manifests,
    reading_env,
    upload,
)
from tests.databases import snapshot
from tests.http_client import gzip_is_valid
from tests.processes import run_cli, wait_until


def downloads_audited(service) -> list[tuple[str, int]]:
    entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    return [(e["outcome"], e.get("bytes")) for e in entries if e.get("event") == "stored-download"]


def get(env: dict[str, str], *args: str, cwd=None):
    return run_cli("get", *args, env=env, cwd=cwd)


def stored_dedup(s3, moto_s3, fresh_db):
    """A new database of several chunks, stored once in the dedup format: (its name, the upload's env,
    the backup's s3:// address, its manifest's key, the manifest)."""
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    stored_url = upload(env)
    (key,) = manifests(client, bucket, name)
    return name, env, stored_url, key, manifest_of(client, bucket, key)


def test_get_and_the_download_give_the_same_sqlgz_of_the_manifests_sql_and_it_restores_identical(
    s3, moto_s3, start_service, fresh_db, pg_cluster, tmp_path
):
    client, bucket = s3
    name, env, stored_url, key, manifest = stored_dedup(s3, moto_s3, fresh_db)
    backup = key.removeprefix("backups/")
    assert len(manifest["chunks"]) >= 5

    # by name under BACKUP_STORAGE_URL (no DATABASE_URL needed), and by its s3:// address
    first = get({k: v for k, v in env.items() if k != "DATABASE_URL"}, backup, "-o", str(tmp_path / "a.sql.gz"))
    assert first.returncode == 0, first.stderr
    data = (tmp_path / "a.sql.gz").read_bytes()
    assert first.stdout == f"{hashlib.sha256(data).hexdigest()}  {tmp_path / 'a.sql.gz'}\n"
    assert f"rebuilt from {len(manifest['chunks'])} chunks" in first.stderr, first.stderr
    second = get(reading_env(moto_s3.endpoint), stored_url, "-o", str(tmp_path / "b.sql.gz"))
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "b.sql.gz").read_bytes() == data
    # the default name: the backup's, ending .sql.gz, in the current directory
    third = get(reading_env(moto_s3.endpoint), stored_url, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert (tmp_path / backup.replace(".sql.dedup", ".sql.gz")).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.sql.gz", "b.sql.gz", backup.replace(".sql.dedup", ".sql.gz")]
    )

    tested = subprocess.run(["gzip", "-t", str(tmp_path / "a.sql.gz")], capture_output=True)  # gzip's own reader
    assert tested.returncode == 0, tested.stderr
    sql = gzip.decompress(data)  # one gzip member per chunk: gunzip reads them as one file
    assert hashlib.sha256(sql).hexdigest() == manifest["sql_sha256"] and len(sql) == manifest["sql_bytes"]
    assert sql.startswith(b"--\n-- PostgreSQL database dump")

    service = start_service(**env)  # env has the DATABASE_URL the backup was taken of
    download = service.request("GET", f"/api/v1/stored/{backup}", service.auth())
    assert download.status == 200 and download.complete, download.body[:300]
    assert download.body == data  # byte-identical to get's file
    assert download.headers["Content-Type"] == "application/gzip"
    assert download.headers["Content-Length"] == str(len(data))
    assert backup.replace(".sql.dedup", ".sql.gz") in download.headers["Content-Disposition"]
    assert wait_until(lambda: downloads_audited(service) == [("ok", len(data))], 10), downloads_audited(service)

    # the files reader takes the many-member file: verify, and a restore identical to the source
    verified = run_cli("verify", str(tmp_path / "a.sql.gz"))
    assert verified.returncode == 0, verified.stderr
    restores_identical(pg_cluster, str(tmp_path / "a.sql.gz"), f"{name}_got", snapshot(pg_cluster, name))


def test_get_of_a_sqlgz_object_copies_it_checked(s3, moto_s3, fresh_db, tmp_path):
    client, bucket = s3
    _, url = fresh_db("dd", "CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g;")
    env = {**dedup_env(moto_s3.endpoint, bucket, url), "BACKUP_STORAGE_FORMAT": "sqlgz"}
    stored_url = upload(env)
    key = stored_url.removeprefix(f"s3://{bucket}/")
    got = get(env, key.removeprefix("backups/"), "-o", str(tmp_path / "c.sql.gz"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "c.sql.gz").read_bytes() == client.get_object(Bucket=bucket, Key=key)["Body"].read()


def flip_a_byte(client, bucket: str, key: str) -> None:
    """One byte of a stored chunk changed in the bucket, as damage would."""
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x10
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))


def test_a_flipped_byte_in_a_chunk_fails_get_naming_it_leaves_no_file_and_breaks_the_download(
    s3, moto_s3, start_service, fresh_db, tmp_path
):
    client, bucket = s3
    name, env, stored_url, key, manifest = stored_dedup(s3, moto_s3, fresh_db)
    victim = manifest["chunks"][len(manifest["chunks"]) // 2][0]
    flip_a_byte(client, bucket, f"backups/_chunks/{name}/{victim}")

    failed = get(reading_env(moto_s3.endpoint), stored_url, "-o", str(tmp_path / "x.sql.gz"))
    assert failed.returncode == 1, failed.stderr
    assert re.search(rf"get failed: .*chunk \d+ of {len(manifest['chunks'])} \({victim}\)", failed.stderr), (
        failed.stderr
    )
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .partial
    keyless = get(s3_env(moto_s3.endpoint), stored_url, "-o", str(tmp_path / "x.sql.gz"))
    assert keyless.returncode == 1 and victim in keyless.stderr, keyless.stderr
    assert list(tmp_path.iterdir()) == []

    service = start_service(**env)  # env has the DATABASE_URL the backup was taken of
    download = service.request("GET", f"/api/v1/stored/{key.removeprefix('backups/')}", service.auth())
    # the transfer breaks: it ends short of its Content-Length, without the last members (not a whole .sql.gz)
    assert download.status == 200 and len(download.body) < int(download.headers["Content-Length"])
    assert not gzip_is_valid(download.body)
    assert victim in service.log()
    assert wait_until(lambda: [o for o, _ in downloads_audited(service)] == ["failed"], 10), downloads_audited(service)
