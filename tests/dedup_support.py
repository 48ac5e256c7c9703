"""A dedup stored backup as the dedup tests make and look at it: the settings, the key, a ~10 MB database
of several chunks, one `upload`, the manifests and chunks in the bucket, and a restore compared."""

from __future__ import annotations

import json

from tests.databases import snapshot
from tests.processes import run_cli
from tests.s3support import all_keys, s3_env


DEDUP_KEY = "dedup-key-for-tests-" + "k" * 24
# ~10 MB of SQL: several 1 MiB chunks, so that an unchanged or slightly changed database shows its dedup
SEVERAL_CHUNKS = """
    CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, note text);
    INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text), repeat(chr(65 + g % 26), 40)
      FROM generate_series(1, 110000) g;
"""


def dedup_env(endpoint: str, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "BACKUP_STORAGE_URL": f"s3://{bucket}/backups",
        "BACKUP_STORAGE_FORMAT": "dedup",
        "BACKUP_DEDUP_KEY": DEDUP_KEY,
        **s3_env(endpoint),
        **extra,
    }


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


def restores_identical(pg_cluster, source: str, target: str, expected: dict, env: dict | None = None) -> None:
    """`restore SOURCE --create` into the new database `target` gives exactly `expected` (a snapshot); dropped."""
    restored = run_cli("restore", source, "--target-url", pg_cluster.url(target), "--create", env=env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, target) == expected, target
    with pg_cluster.connect() as db:
        db.execute(f'DROP DATABASE "{target}" WITH (FORCE)')
