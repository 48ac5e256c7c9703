"""BACKUP_STORAGE_FORMAT=dedup as a user runs it (`upload`, `list`, `verify`, `restore`, `prune`), against a real
PostgreSQL and moto's S3 server on loopback: chunks stored once, manifests written last, every chunk checked."""
from __future__ import annotations

import json
import time


from tests.s3support import all_keys, incomplete_uploads, s3_env
from tests.support import run_cli, snapshot

DEDUP_KEY = "dedup-key-for-tests-" + "k" * 24
# ~10 MB of SQL: several 1 MiB chunks, so that an unchanged or slightly changed database shows its dedup
SEVERAL_CHUNKS = """
    CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, note text);
    INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text), repeat(chr(65 + g % 26), 40)
      FROM generate_series(1, 110000) g;
"""


def dedup_env(endpoint: str, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", "BACKUP_STORAGE_FORMAT": "dedup",
            "BACKUP_DEDUP_KEY": DEDUP_KEY, **s3_env(endpoint), **extra}


def reading_env(endpoint: str) -> dict[str, str]:
    return {**s3_env(endpoint), "BACKUP_DEDUP_KEY": DEDUP_KEY}


def chunk_keys(client, bucket: str, db: str) -> list[str]:
    return [k for k in all_keys(client, bucket) if k.startswith(f"backups/_chunks/{db}/")]


def manifests(client, bucket: str, db: str) -> list[str]:
    return [k for k in all_keys(client, bucket) if k.startswith(f"backups/{db}_backup_") and k.endswith(".sql.dedup")]


def manifest_of(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def upload(env: dict[str, str]) -> str:
    """One `upload`; the stored manifest's s3:// URL."""
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[1]


def test_an_unchanged_database_uploads_no_new_chunks_the_second_time(s3, moto_s3, fresh_db):
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    upload(env)
    first_chunks = chunk_keys(client, bucket, name)
    assert len(first_chunks) >= 5, first_chunks
    time.sleep(1.1)  # backup names have a one-second resolution
    upload(env)
    # pg_dump (17.6+, 16.10+, …) writes a random `\\restrict` key in its first and last lines: the chunks that
    # hold them are new every time, every other one is reused
    new = set(chunk_keys(client, bucket, name)) - set(first_chunks)
    assert len(new) <= 2, new
    first, second = (manifest_of(client, bucket, k) for k in manifests(client, bucket, name))
    assert first["chunks"][1:-1] == second["chunks"][1:-1]
    assert incomplete_uploads(client, bucket) == []

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(line.split()[0].endswith(".sql.dedup") for line in lines)
    # each one's full size (all its chunks, compressed), not its manifest's
    assert [int(line.split()[1]) for line in lines] == [sum(c[2] for c in m["chunks"]) for m in (second, first)]


def test_a_slightly_changed_database_uploads_few_new_chunks(s3, moto_s3, fresh_db, pg_cluster):
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    upload(env)
    before = set(chunk_keys(client, bucket, name))
    with pg_cluster.connect(name) as db:
        db.execute("UPDATE items SET note = 'changed' WHERE id BETWEEN 50000 AND 50010")
    time.sleep(1.1)
    second = upload(env)
    new = set(chunk_keys(client, bucket, name)) - before
    assert 1 <= len(new) <= 3, (len(new), len(before))
    restored = run_cli("restore", second, "--target-url", pg_cluster.url(f"{name}_r"), "--create",
                       env=reading_env(moto_s3.endpoint))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, f"{name}_r") == snapshot(pg_cluster, name)


def test_a_dedup_backup_of_the_rich_database_restores_identical(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    env = dedup_env(moto_s3.endpoint, bucket, rich_db)
    url = upload(env)
    (key,) = manifests(client, bucket, "rich")
    assert url == f"s3://{bucket}/{key}"
    manifest = manifest_of(client, bucket, key)
    assert manifest["table_rows"] and manifest["server_version"] and manifest["pg_dump_version"]
    verified = run_cli("verify", url, env=reading_env(moto_s3.endpoint))
    assert verified.returncode == 0, verified.stderr
    assert "(dedup)" in verified.stdout and "stored sha256:    matches" in verified.stdout
    restored = run_cli("restore", url, "--target-url", pg_cluster.url("rich_from_dedup"), "--create",
                       env=reading_env(moto_s3.endpoint))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_from_dedup") == snapshot(pg_cluster, "rich")
