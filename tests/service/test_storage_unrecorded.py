"""Backups an older backup_svc stored before the ownership record existed: after the upgrade they are
listed again — read-only, marked "no owner record" — downloadable, verifiable and restorable, but never
pruned by retention nor counted as this service's backups. Junk named like a backup (no sha256, no
backup name) stays out of the list. Real moto S3 server, PostgreSQL, the CLI and gunicorn.

The old backup is the real dump of the `rich` database put into the bucket with the metadata older
versions wrote (backup name, sha256, versions; no `written-by`, database or cluster): a state no test
can wait for.
"""

from __future__ import annotations

import urllib.request

from tests.processes import run_cli
from tests.s3support import cluster_identity, object_keys, owned, s3_env, seed_backup

OLD = "backups/rich_backup_20250601_030000.sql.gz"  # stored by an older version
OWNED = "backups/rich_backup_20260101_030000.sql.gz"  # stored by this version
JUNK = "backups/rich_backup_20250701_030000.sql.gz"  # named like one, nothing else


def env_for(moto_s3, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(moto_s3.endpoint), **extra}


def seed(client, bucket: str, pg_cluster, backup) -> None:
    seed_backup(client, bucket, OLD, backup.read_bytes(), owner={"backup-name": "rich"})
    seed_backup(client, bucket, OWNED, owner=owned(cluster_identity(pg_cluster), "rich"))
    client.put_object(Bucket=bucket, Key=JUNK, Body=b"twelve bytes")


def test_an_older_versions_backup_is_listed_read_only_and_never_pruned(s3, moto_s3, rich_db, pg_cluster, backup):
    client, bucket = s3
    seed(client, bucket, pg_cluster, backup)
    env = env_for(moto_s3, bucket, rich_db)

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "rich_backup_20260101_030000.sql.gz",
        "rich_backup_20250601_030000.sql.gz",
    ]  # newest first, junk not
    assert lines[1].endswith("no-owner-record") and not lines[0].endswith("no-owner-record")
    assert "1 more stored by an older version" in listed.stderr
    assert "not listed: rich_backup_20250701_030000.sql.gz" in listed.stderr

    # read-only, but whole: verify reads it and says it is complete
    verified = run_cli("verify", f"s3://{bucket}/{OLD}", env=env)
    assert verified.returncode == 0, verified.stderr

    # retention keeps only the newest of this service's own, and never touches the old one
    done = run_cli("upload", env={**env, "BACKUP_RETENTION": "last=1"})
    assert done.returncode == 0, done.stderr
    keys = set(object_keys(client, bucket))
    assert OLD in keys and JUNK in keys and OWNED not in keys, keys
    assert "keep    rich_backup_20250601_030000.sql.gz  (no owner record: stored by an older version" in done.stderr, (
        done.stderr
    )


def test_the_api_lists_it_apart_and_downloads_it(s3, moto_s3, rich_db, pg_cluster, backup, start_service):
    client, bucket = s3
    seed(client, bucket, pg_cluster, backup)
    service = start_service(**env_for(moto_s3, bucket, rich_db))

    reply = service.request("GET", "/api/v1/stored", service.auth())
    assert reply.status == 200, reply.body
    body = reply.json()
    assert [b["name"] for b in body["backups"]] == ["rich_backup_20260101_030000.sql.gz"]
    assert [(b["name"], b["owner_record"]) for b in body["unrecorded"]] == [
        ("rich_backup_20250601_030000.sql.gz", False)
    ]
    assert body["newest"]["name"] == "rich_backup_20260101_030000.sql.gz"  # freshness: this service's only
    link = service.request("GET", "/api/v1/stored/rich_backup_20250601_030000.sql.gz", service.auth())
    assert link.status == 302 and OLD in link.headers["Location"]
    with urllib.request.urlopen(link.headers["Location"], timeout=30) as got:  # no credentials: the link is enough
        assert got.status == 200 and got.read() == backup.read_bytes()  # the old backup's own bytes
