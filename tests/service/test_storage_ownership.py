"""Retention and listings act only on this service's own backups: the ownership record in the metadata
decides, never the name alone; a name's time in the future is not believed; the object just stored
is never deleted; a stored object is never overwritten. Real PostgreSQL, moto's S3 server, the CLI."""

from __future__ import annotations

import hashlib
import os

import pytest

from backup_svc.storage.client import StorageError
from backup_svc.storage.upload import MultipartUpload

from tests.processes import run_cli
from tests.s3support import FAST_RETRY, cluster_identity, incomplete_uploads, object_keys, owned, s3_env, seed_backup

JUNK = "backups/rich_backup_20991231_000000.sql.gz"  # a later date than any real backup
OLDER = [f"backups/rich_backup_202601{day:02d}_030000.sql.gz" for day in (1, 2, 3)]


def env_for(moto_s3, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(moto_s3.endpoint), **extra}


def new_keys(client, bucket: str, before: set[str]) -> list[str]:
    return [k for k in object_keys(client, bucket) if k not in before]


def test_retention_keeps_the_new_backup_whatever_name_lies_in_the_future(s3, moto_s3, rich_db, pg_cluster):
    """Issue 21, fault 1: a 12-byte object named for 2099 (no metadata) made `last=1` delete the backup
    just stored and keep the junk."""
    client, bucket = s3
    ours = owned(cluster_identity(pg_cluster), "rich")
    for key in OLDER:
        seed_backup(client, bucket, key, owner=ours)
    client.put_object(Bucket=bucket, Key=JUNK, Body=b"twelve bytes")
    before = set(object_keys(client, bucket))

    done = run_cli("upload", env=env_for(moto_s3, bucket, rich_db, BACKUP_RETENTION="last=1"))

    assert done.returncode == 0, done.stderr
    (new,) = new_keys(client, bucket, before)
    assert set(object_keys(client, bucket)) == {new, JUNK}  # the new one kept, the real older ones pruned
    assert "ignored rich_backup_20991231_000000.sql.gz" in done.stderr  # reported, not counted, not deleted


def test_a_name_later_than_its_object_is_not_believed_even_with_our_metadata(s3, moto_s3, rich_db, pg_cluster):
    """A clock that once ran ahead: an object of ours whose name says 2099 is reported, never kept in
    place of the newest real backup, never deleted, never the newest in `list`."""
    client, bucket = s3
    ours = owned(cluster_identity(pg_cluster), "rich")
    seed_backup(client, bucket, JUNK, owner=ours)
    seed_backup(client, bucket, OLDER[0], owner=ours)
    env = env_for(moto_s3, bucket, rich_db, BACKUP_RETENTION="last=1")

    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    # reported by the retention, with the reason: the metadata is ours, the name's time is not believed
    assert "ignored rich_backup_20991231_000000.sql.gz  (not counted, not deleted: its name's time" in done.stderr
    listed = run_cli("list", env=env)

    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert len(names) == 1 and names[0].startswith("rich_backup_20") and names[0] != JUNK.split("/")[1]
    assert JUNK in object_keys(client, bucket) and OLDER[0] not in object_keys(client, bucket)


def test_two_services_sharing_a_prefix_and_a_name_keep_and_prune_only_their_own(s3, moto_s3, rich_db, pg_cluster):
    """Issue 21, fault 2: two Railway databases are both `railway`; here the other service's backups
    carry the same backup name and database name but another cluster's identifier. This service's own
    older backup is pruned by `last=1`, theirs are not."""
    client, bucket = s3
    theirs = owned("7000000000000000001", "rich")
    other = [f"backups/rich_backup_202612{day:02d}_030000.sql.gz" for day in (1, 2)]
    for key in other:
        seed_backup(client, bucket, key, owner=theirs)
    seed_backup(client, bucket, OLDER[0], owner=owned(cluster_identity(pg_cluster), "rich"))
    env = env_for(moto_s3, bucket, rich_db, BACKUP_RETENTION="last=1")

    first = run_cli("upload", env=env)
    assert first.returncode == 0, first.stderr
    listed = run_cli("list", env=env)
    checked = run_cli("check", env={**env, "ADMIN_TOKEN": "t" * 20})

    assert set(other) <= set(object_keys(client, bucket))  # never deleted by this service's retention
    assert OLDER[0] not in object_keys(client, bucket)  # which did run, on its own backups
    assert len(listed.stdout.splitlines()) == 1  # and never listed as its own
    assert "another service" in checked.stdout + checked.stderr
    assert "7000000000000000001" in checked.stdout + checked.stderr


def test_completion_never_replaces_an_object_that_appeared_meanwhile(s3):
    """Issue 21, fault 2: another writer completes the same key while this upload runs (same name,
    same second). The completion must fail and leave the other object exactly as it was."""
    client, bucket = s3
    key = "backups/railway_backup_20261204_030000.sql.gz"
    theirs = os.urandom(1000)
    with pytest.raises(StorageError, match="already"):
        with MultipartUpload(client, bucket, key, part_size=5 * 1024 * 1024, retry=FAST_RETRY) as upload:
            upload.write(os.urandom(2000))
            client.put_object(Bucket=bucket, Key=key, Body=theirs)  # the other service finished first
            upload.complete()
    got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(theirs).hexdigest()
    assert incomplete_uploads(client, bucket) == []


def test_the_backup_just_stored_is_never_deleted(s3, moto_s3, rich_db, pg_cluster):
    """A real backup of ours named 10 minutes ahead (a clock a little fast, within the margin, so it is
    believed and is the newest): `last=1` keeps it, and the backup just stored is kept all the same."""
    from datetime import datetime, timedelta, timezone

    client, bucket = s3
    ahead = f"backups/rich_backup_{datetime.now(timezone.utc) + timedelta(minutes=10):%Y%m%d_%H%M%S}.sql.gz"
    seed_backup(client, bucket, ahead, owner=owned(cluster_identity(pg_cluster), "rich"))
    before = set(object_keys(client, bucket))

    done = run_cli("upload", env=env_for(moto_s3, bucket, rich_db, BACKUP_RETENTION="last=1"))

    assert done.returncode == 0, done.stderr
    (new,) = new_keys(client, bucket, before)
    assert set(object_keys(client, bucket)) == {new, ahead}
    assert f"keep    {new.split('/')[1]}  (just stored)" in done.stderr


def test_a_failed_clean_up_says_what_is_left_and_the_object_is_ignored(s3, moto_s3, fault_proxy, rich_db):
    """Issue 21, weaker finding: attaching the sha256 fails (500 for good) and deleting the object fails
    too (403): the run said "nothing was stored" while a complete object without sha256 stayed and
    counted as the newest. (Faults from a proxy: moto never fails.)"""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.add(lambda method, path, query: method == "PUT" and "partNumber" not in query, ["500"], repeat_last=True)
    proxy.add(lambda method, path, query: method == "DELETE" and "uploadId" not in query, ["403"], repeat_last=True)
    env = {"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(proxy.endpoint)}

    done = run_cli("upload", env=env)

    assert done.returncode == 1
    (key,) = object_keys(client, bucket)
    assert "sha256" not in client.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert f"left in the bucket: the object {key}, which could not be verified and has no sha256" in done.stderr
    assert "nothing was stored" not in done.stderr
    listed = run_cli("list", env={**env, **s3_env(moto_s3.endpoint)})
    assert listed.returncode == 0 and listed.stdout == "", listed.stdout
