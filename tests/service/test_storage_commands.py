"""`upload`, `list`, `prune`, `verify s3://…`, `restore s3://…` as a user runs them, against a real
PostgreSQL and moto's S3 server on loopback."""

from __future__ import annotations


import pytest

from tests.databases import snapshot
from tests.processes import UPLOAD_KILLS, pg_dump_pids, run_cli, start_cli, upload_killed_once_begun, wait_until
from tests.s3support import cluster_identity, incomplete_uploads, object_keys, owned, s3_env

OLD = "backups/{db}_backup_20260101_030000.sql.gz"


def storage_env(endpoint: str, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(endpoint), **extra}


def seed_old_backup(client, bucket: str, db: str) -> bytes:
    body = b"an older stored backup"
    client.put_object(Bucket=bucket, Key=OLD.format(db=db), Body=body)
    return body


def stored_keys(client, bucket: str, db: str) -> list[str]:
    return [k for k in object_keys(client, bucket) if k.startswith(f"backups/{db}_backup_") and k != OLD.format(db=db)]


def test_upload_then_restore_from_the_bucket_gives_an_identical_database(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    env = storage_env(moto_s3.endpoint, bucket, rich_db)
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    (key,) = stored_keys(client, bucket, "rich")
    sha256, url = done.stdout.split()
    assert url == f"s3://{bucket}/{key}"
    # the final metadata is in the object's sha256 record (issue 25); an opened object reads it there
    from backup_svc.storage.reader import open_object

    with open_object(client, bucket, key) as opened:
        metadata, stored_size = opened.metadata, opened.size
    assert "sha256" not in client.head_object(Bucket=bucket, Key=key)["Metadata"]
    assert metadata["sha256"] == sha256
    assert metadata["database"] == "rich" and int(metadata["sql-bytes"]) > stored_size
    assert {"server-version", "pg-dump-version", "duration-s"} <= set(metadata)
    assert incomplete_uploads(client, bucket) == []

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    name, size, when, listed_sha, encryption = listed.stdout.split()
    assert encryption == "plain"
    assert (f"backups/{name}", int(size), listed_sha) == (key, stored_size, sha256)
    stamp = key.split("_backup_")[1][:15]  # YYYYMMDD_HHMMSS
    assert when == f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"

    verified = run_cli("verify", url, env=s3_env(moto_s3.endpoint))
    assert verified.returncode == 0, verified.stderr
    assert f"sha256:           {sha256}" in verified.stdout and "stored sha256:    matches" in verified.stdout

    restored = run_cli(
        "restore", url, "--target-url", pg_cluster.url("rich_from_bucket"), "--create", env=s3_env(moto_s3.endpoint)
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_from_bucket") == snapshot(pg_cluster, "rich")


def test_verify_notices_an_object_that_changed_after_it_was_stored(s3, moto_s3, rich_db):
    client, bucket = s3
    env = storage_env(moto_s3.endpoint, bucket, rich_db)
    assert run_cli("upload", env=env).returncode == 0
    (key,) = stored_keys(client, bucket, "rich")
    head = client.head_object(Bucket=bucket, Key=key)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    # Same bytes, different stored sha256: what an object swapped for another backup looks like.
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={**head["Metadata"], "sha256": "0" * 64})
    verified = run_cli("verify", f"s3://{bucket}/{key}", env=s3_env(moto_s3.endpoint))
    assert verified.returncode == 1
    assert "the sha256 stored with it is 0000" in verified.stderr


@pytest.mark.parametrize("kill", UPLOAD_KILLS)
def test_a_backup_killed_mid_upload_leaves_nothing_behind(kill, s3, moto_s3, fault_proxy, big_db, pg_cluster):
    """Parts go through a proxy that delays each (a slow link) so the kill lands mid-upload."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(1.0)
    old_body = seed_old_backup(client, bucket, "big")
    upload = start_cli("upload", env=storage_env(proxy.endpoint, bucket, big_db, BACKUP_RETENTION="last=1"))

    def begun():
        return incomplete_uploads(client, bucket) and pg_dump_pids(pg_cluster)

    out, err, expected = upload_killed_once_begun(kill, upload, begun, pg_cluster, "big")
    assert upload.returncode == expected, err
    assert "the upload was aborted and nothing was stored" in err
    assert stored_keys(client, bucket, "big") == []
    assert incomplete_uploads(client, bucket) == []
    assert client.get_object(Bucket=bucket, Key=OLD.format(db="big"))["Body"].read() == old_body  # no retention ran
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)


def test_storage_failing_on_one_part_is_retried_then_aborted(s3, moto_s3, fault_proxy, big_db):
    """Part 2 answers 500, 500, then drops the connection, then 500 for good (a proxy's faults; the
    backoff is the production one, ~8 s in all)."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.fail_part(2, ["500", "500", "drop", "500"], repeat_last=True)
    old_body = seed_old_backup(client, bucket, "big")
    done = run_cli("upload", env=storage_env(proxy.endpoint, bucket, big_db, BACKUP_RETENTION="last=1"))
    assert done.returncode == 1
    assert "uploading part 2 of backups/big_backup_" in done.stderr and "failed after 5 attempts" in done.stderr
    assert "retrying in" in done.stderr  # each retry is logged
    assert proxy.attempts(2) == ["500", "500", "drop", "500", "500"]
    assert stored_keys(client, bucket, "big") == []
    assert incomplete_uploads(client, bucket) == []
    assert client.get_object(Bucket=bucket, Key=OLD.format(db="big"))["Body"].read() == old_body


def test_two_uploads_at_once_one_runs_the_other_says_so(s3, moto_s3, fault_proxy, big_db):
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(0.5)
    env = storage_env(proxy.endpoint, bucket, big_db)
    first = start_cli("upload", env=env)
    try:
        assert wait_until(lambda: incomplete_uploads(client, bucket), 30)
        second = run_cli("upload", env=env)
        assert second.returncode == 75
        assert "another stored backup is running" in second.stderr and "not a failure" in second.stderr
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert len(stored_keys(client, bucket, "big")) == 1


def ours(pg_cluster) -> dict[str, str]:
    """The metadata of a backup the rich database's service stored (its ownership record, a sha256)."""
    return {"sha256": "0" * 64, **owned(cluster_identity(pg_cluster), "rich")}


def put_ours(client, bucket: str, pg_cluster, names: list[str]) -> None:
    """Backups named `names` under backups/, as the rich database's service would have stored them."""
    for name in names:
        client.put_object(Bucket=bucket, Key=f"backups/{name}", Body=b"old", Metadata=ours(pg_cluster))


def test_retention_runs_after_a_successful_upload(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    put_ours(client, bucket, pg_cluster, [f"rich_backup_202601{day:02d}_030000.sql.gz" for day in range(1, 6)])
    client.put_object(Bucket=bucket, Key="backups/notes.txt", Body=b"keep me")
    done = run_cli("upload", env=storage_env(moto_s3.endpoint, bucket, rich_db, BACKUP_RETENTION="last=2"))
    assert done.returncode == 0, done.stderr
    (new,) = [
        k
        for k in object_keys(client, bucket)
        if k.startswith("backups/rich_backup_2026") and not k.startswith("backups/rich_backup_202601")
    ]
    assert object_keys(client, bucket) == sorted(
        [new, "backups/rich_backup_20260105_030000.sql.gz", "backups/notes.txt"]
    )
    assert "retention: deleted rich_backup_20260101_030000.sql.gz" in done.stderr


def test_prune_dry_run_then_prune(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    put_ours(client, bucket, pg_cluster, [f"rich_backup_202611{day:02d}_030000.sql.gz" for day in range(1, 4)])
    env = storage_env(moto_s3.endpoint, bucket, rich_db, BACKUP_RETENTION="daily=2")
    dry = run_cli("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "keep    rich_backup_20261103_030000.sql.gz  (daily 2026-11-03)",
        "keep    rich_backup_20261102_030000.sql.gz  (daily 2026-11-02)",
        "would delete rich_backup_20261101_030000.sql.gz  (kept by no rule of daily=2)",
    ]
    assert len(object_keys(client, bucket)) == 3
    pruned = run_cli("prune", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert object_keys(client, bucket) == [
        "backups/rich_backup_20261102_030000.sql.gz",
        "backups/rich_backup_20261103_030000.sql.gz",
    ]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BACKUP_STORAGE_URL": "https://bucket/x"}, "BACKUP_STORAGE_URL must look like s3://<bucket>/<prefix>"),
        ({"BACKUP_STORAGE_URL": ""}, "BACKUP_STORAGE_URL is not set"),
        ({"BACKUP_RETENTION": "forever"}, "BACKUP_RETENTION has 'forever'"),
        ({"AWS_S3_URL_STYLE": "dns"}, "AWS_S3_URL_STYLE must be 'path' or 'virtual'"),
    ],
)
def test_bad_storage_settings_are_refused_in_one_line(env, message, moto_s3, rich_db):
    done = run_cli("upload", env={**storage_env(moto_s3.endpoint, "bkt", rich_db), **env})
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "test-secret" not in done.stderr


def test_a_missing_bucket_is_a_clear_failure(moto_s3, rich_db, pg_cluster):
    """pg_dump starts while the storage is reached (the upload is created with its first part): when the
    bucket turns out missing, the dump is stopped too, not left running."""
    done = run_cli("upload", env=storage_env(moto_s3.endpoint, "no-such-bucket", rich_db))
    assert done.returncode == 1
    assert "NoSuchBucket" in done.stderr and "nothing was stored" in done.stderr
    assert pg_dump_pids(pg_cluster) == []


def test_check_says_where_backups_go_and_whether_it_is_reachable(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    put_ours(client, bucket, pg_cluster, ["rich_backup_20261101_030000.sql.gz"])
    env = storage_env(
        moto_s3.endpoint, bucket, rich_db, ADMIN_TOKEN="t" * 20, BACKUP_SCHEDULE="0 3 * * *", BACKUP_RETENTION="daily=7"
    )
    done = run_cli("check", env=env)
    assert done.returncode == 0, done.stdout
    assert (
        f"storage: ok — s3://{bucket}/backups/ at {moto_s3.endpoint}: 1 stored backup, newest "
        f"rich_backup_20261101_030000.sql.gz"
    ) in done.stdout
    assert "schedule: 0 3 * * * — At 03:00 every day (UTC); next " in done.stdout
    assert "retention: daily=7" in done.stdout
    missing = run_cli("check", env={**env, "BACKUP_STORAGE_URL": "s3://no-such-bucket/x"})
    assert missing.returncode == 1
    assert "storage: s3://no-such-bucket/x/" in missing.stdout and "NoSuchBucket" in missing.stdout
    assert "test-secret" not in missing.stdout + missing.stderr
