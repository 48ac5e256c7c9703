"""Incomplete uploads left by killed runs (SIGKILL, OOM, a redeploy) are aborted by every later upload,
with or without BACKUP_RETENTION — Railway Buckets have no lifecycle rules to do it. Real PostgreSQL,
moto's S3 server, the CLI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backup_svc.storage.location import BackupNames, parse_storage_url
from backup_svc.storage.prune import STALE_UPLOAD_AGE, abort_stale_uploads

from tests.processes import run_cli
from tests.s3support import FAST_RETRY, incomplete_uploads, s3_env

LEFT = "backups/rich_backup_20261201_030000.sql.gz"


def test_an_upload_without_retention_aborts_what_a_killed_run_left(s3, moto_s3, rich_db):
    """Issue 21, fault 6: without BACKUP_RETENTION nothing ever aborted them."""
    client, bucket = s3
    left = client.create_multipart_upload(Bucket=bucket, Key=LEFT)["UploadId"]
    theirs = client.create_multipart_upload(Bucket=bucket, Key="backups/orders_backup_20261201_030000.sql.gz")
    (listed, _) = sorted(incomplete_uploads(client, bucket), key=lambda u: u["Key"] != LEFT)
    # The age the service judges by is what the storage reports; moto reports a date years ago.
    assert listed["Initiated"] < datetime.now(timezone.utc) - STALE_UPLOAD_AGE

    done = run_cli(
        "upload",
        env={"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(moto_s3.endpoint)},
    )

    assert done.returncode == 0, done.stderr
    remaining = {u["UploadId"] for u in incomplete_uploads(client, bucket)}
    assert left not in remaining and remaining == {theirs["UploadId"]}  # another database's: left alone
    assert f"aborted the incomplete upload of {LEFT}" in done.stderr


def test_an_upload_younger_than_the_longest_run_is_left_alone(s3):
    """The clock is injected relative to the storage's own date for the upload (not moto's fixed one):
    a day minus a minute is a run that may still be going; a day plus a minute is a dead one."""
    client, bucket = s3
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=LEFT)["UploadId"]
    (listed,) = incomplete_uploads(client, bucket)
    location, names = parse_storage_url(f"s3://{bucket}/backups"), BackupNames("rich")

    young = listed["Initiated"] + STALE_UPLOAD_AGE - timedelta(minutes=1)
    assert abort_stale_uploads(client, location, names, now=young, retry=FAST_RETRY) == []
    assert [u["UploadId"] for u in incomplete_uploads(client, bucket)] == [upload_id]

    old = listed["Initiated"] + STALE_UPLOAD_AGE + timedelta(minutes=1)
    assert abort_stale_uploads(client, location, names, now=old, retry=FAST_RETRY) == [(LEFT, listed["Initiated"])]
    assert incomplete_uploads(client, bucket) == []
