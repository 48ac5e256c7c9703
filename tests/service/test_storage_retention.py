"""Listing and pruning a seeded bucket on moto's S3 server: exactly the expected set survives."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from backup_svc.storage.client import StorageError
from backup_svc.storage.listing import list_backups
from backup_svc.storage.location import BackupNames, parse_storage_url
from backup_svc.storage.ownership import Owner
from backup_svc.storage.prune import abort_stale_uploads, prune
from backup_svc.storage.retention import parse_retention

from tests.s3support import FAST_RETRY, object_keys

LOCATION = parse_storage_url("s3://placeholder/backups")
NAMES = BackupNames("shop")
OWNER = Owner("shop", "shop", "7301234567890123456")
FIRST_DAY = date(2026, 8, 1)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(120)]  # 2026-08-01 … 2026-11-28
# Not this service's backups: each must survive every prune.
FOREIGN = [
    "backups/notes.txt",
    "backups/orders_backup_20260901_030000.sql.gz",  # another database sharing the prefix
    "backups/shop_backup_20260901_030000.sql.gz.partial",
    "backups/shop_backup_20260901_030000.sql",
    "backups/shop_backup_2026090_030000.sql.gz",  # wrong stamp length
    "backups/shop_backup_20261399_030000.sql.gz",  # no such date
    "backups/old/shop_backup_20260901_030000.sql.gz",  # a sub-folder
    "elsewhere/shop_backup_20260901_030000.sql.gz",  # outside the prefix
    "shop_backup_20260901_030000.sql.gz",  # bucket root, outside the prefix
]


def backup_key(day: date, hour: int = 3) -> str:
    return f"backups/shop_backup_{day:%Y%m%d}_{hour:02d}0000.sql.gz"


def seed(client, bucket: str) -> None:
    for day in DAYS:
        client.put_object(
            Bucket=bucket,
            Key=backup_key(day),
            Body=f"backup of {day}".encode(),
            Metadata={"sha256": f"{day:%Y%m%d}", **OWNER.metadata()},
        )
    for key in FOREIGN:
        client.put_object(Bucket=bucket, Key=key, Body=b"not ours")


def located(bucket: str):
    return parse_storage_url(f"s3://{bucket}/backups")


def test_list_shows_only_this_services_backups_newest_first(s3):
    client, bucket = s3
    seed(client, bucket)
    backups = list_backups(client, located(bucket), NAMES, OWNER, retry=FAST_RETRY)
    assert [b.key for b in backups] == [backup_key(d) for d in reversed(DAYS)]
    newest = backups[0]
    assert newest.name == "shop_backup_20261128_030000.sql.gz"
    assert newest.time == datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)
    assert newest.size == len(b"backup of 2026-11-28")
    assert newest.sha256 == "20261128"


def test_retention_on_120_daily_backups_keeps_exactly_the_expected_set(s3):
    """last=3,daily=7,weekly=4,monthly=6 over one backup a day, 2026-08-01 … 2026-11-28 (a Saturday).

    Worked out by hand: daily keeps Nov 22–28 (which covers last=3); weekly keeps the newest of ISO
    weeks 48 (Nov 28), 47 (Sun Nov 22), 46 (Sun Nov 15), 45 (Sun Nov 8); monthly keeps Nov 28,
    Oct 31, Sep 30, Aug 31 — and, as restic does, the oldest backup (Aug 1) because monthly still
    had counts left when it reached it.
    """
    client, bucket = s3
    seed(client, bucket)
    report = prune(
        client, located(bucket), NAMES, OWNER, parse_retention("last=3,daily=7,weekly=4,monthly=6"), retry=FAST_RETRY
    )
    expected = {date(2026, 11, d) for d in range(22, 29)} | {
        date(2026, 11, 15),
        date(2026, 11, 8),
        date(2026, 10, 31),
        date(2026, 9, 30),
        date(2026, 8, 31),
        date(2026, 8, 1),
    }
    assert object_keys(client, bucket) == sorted([backup_key(d) for d in expected] + FOREIGN)
    assert len(report.deleted) == 120 - len(expected)
    assert report.failed == []


def test_dry_run_deletes_nothing_and_says_what_would_go_and_why(s3):
    client, bucket = s3
    seed(client, bucket)
    report = prune(client, located(bucket), NAMES, OWNER, parse_retention("daily=2"), dry_run=True, retry=FAST_RETRY)
    assert len(object_keys(client, bucket)) == 120 + len(FOREIGN)
    assert report.deleted == []
    lines = report.lines()
    assert lines[0] == "keep    shop_backup_20261128_030000.sql.gz  (daily 2026-11-28)"
    assert lines[1] == "keep    shop_backup_20261127_030000.sql.gz  (daily 2026-11-27)"
    assert lines[2] == "would delete shop_backup_20261126_030000.sql.gz  (kept by no rule of daily=2)"
    assert len([line for line in lines if line.startswith("would delete")]) == 118


def test_the_newest_backup_is_kept_whatever_the_policy(s3):
    client, bucket = s3
    seed(client, bucket)
    client.put_object(
        Bucket=bucket,
        Key=backup_key(date(2026, 11, 28), hour=23),
        Body=b"latest",
        Metadata={"sha256": "latest", **OWNER.metadata()},
    )
    prune(client, located(bucket), NAMES, OWNER, parse_retention("monthly=1"), retry=FAST_RETRY)
    assert backup_key(date(2026, 11, 28), hour=23) in object_keys(client, bucket)


def test_a_listing_error_deletes_nothing(s3, fault_proxy):
    """Storage answers every listing with 500 (a proxy's fault: moto never fails): prune raises, deletes nothing."""
    client, bucket = s3
    proxy, via_proxy = fault_proxy
    seed(client, bucket)
    proxy.add(lambda method, path, query: method == "GET" and "list-type" in query, ["500"], repeat_last=True)
    with pytest.raises(StorageError, match="listing .* after 5 attempts"):
        prune(via_proxy, located(bucket), NAMES, OWNER, parse_retention("last=1"), retry=FAST_RETRY)
    assert len(object_keys(client, bucket)) == 120 + len(FOREIGN)
    assert not [entry for entry in proxy.log if entry[0] == "DELETE"]


def test_incomplete_uploads_of_this_service_are_aborted_others_left(s3):
    """moto reports every upload as started on 2010-11-10, so all look stale here; the age cut-off
    itself is tested in tests/unit/test_storage_prune.py with real times."""
    client, bucket = s3
    ours = client.create_multipart_upload(Bucket=bucket, Key=backup_key(date(2026, 11, 1)))["UploadId"]
    theirs = client.create_multipart_upload(Bucket=bucket, Key="backups/orders_backup_20261101_030000.sql.gz")
    outside = client.create_multipart_upload(Bucket=bucket, Key="other/shop_backup_20261101_030000.sql.gz")
    dry = abort_stale_uploads(client, located(bucket), NAMES, dry_run=True, retry=FAST_RETRY)
    assert [key for key, _ in dry] == [backup_key(date(2026, 11, 1))]
    assert len(client.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 3
    done = abort_stale_uploads(client, located(bucket), NAMES, retry=FAST_RETRY)
    assert [key for key, _ in done] == [backup_key(date(2026, 11, 1))]
    left = {(u["Key"], u["UploadId"]) for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]}
    assert left == {(theirs["Key"], theirs["UploadId"]), (outside["Key"], outside["UploadId"])}
    assert ours not in {upload_id for _, upload_id in left}
