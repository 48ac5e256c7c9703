"""Prune's pure parts: which incomplete uploads are stale, the safety checks, the report."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.storage.listing import StoredBackup
from backup_svc.storage.location import BackupNames, parse_storage_url
from backup_svc.storage.ownership import Owner
from backup_svc.storage.prune import PruneReport, _check_safe, stale_uploads
from backup_svc.storage.retention import RetentionPolicy, apply_retention, removal_reason

LOCATION = parse_storage_url("s3://bkt/backups")
NAMES = BackupNames("shop")
NOW = datetime(2026, 11, 28, 19, 0, tzinfo=timezone.utc)
OWNER = Owner("shop", "shop", "7301234567890123456")


def upload(key: str, age: timedelta) -> dict:
    return {"Key": key, "UploadId": key + "-id", "Initiated": NOW - age}


def test_only_this_services_uploads_older_than_a_day_are_stale():
    uploads = [
        upload("backups/shop_backup_20261126_030000.sql.gz", timedelta(days=2)),  # stale
        upload("backups/shop_backup_20261128_030000.sql.gz", timedelta(hours=16)),  # running or recent
        upload("backups/orders_backup_20261126_030000.sql.gz", timedelta(days=2)),  # another database
        upload("backups/big-file.bin", timedelta(days=30)),  # not a backup
        upload("other/shop_backup_20261126_030000.sql.gz", timedelta(days=2)),  # outside the prefix
    ]
    stale = stale_uploads(uploads, LOCATION, NAMES, NOW - timedelta(days=1))
    assert [u["Key"] for u in stale] == ["backups/shop_backup_20261126_030000.sql.gz"]


def backup(day: int) -> StoredBackup:
    name = f"shop_backup_202611{day:02d}_030000.sql.gz"
    return StoredBackup(
        name=name,
        key="backups/" + name,
        size=1,
        time=datetime(2026, 11, day, 3, tzinfo=timezone.utc),
        metadata={**OWNER.metadata(), "sha256": "ab" * 32},
    )


def test_safety_checks_refuse_the_newest_the_just_stored_and_foreign_objects():
    backups = [backup(28), backup(27), backup(26)]
    _check_safe([backups[1]], backups, LOCATION, NAMES, OWNER, None)  # an ordinary removal passes
    with pytest.raises(AssertionError, match="newest"):
        _check_safe([backups[0]], backups, LOCATION, NAMES, OWNER, None)
    with pytest.raises(AssertionError, match="just stored"):
        _check_safe([backups[2]], backups, LOCATION, NAMES, OWNER, backups[2].key)
    foreign = StoredBackup(name="notes.txt", key="backups/notes.txt", size=1, time=backups[1].time)
    with pytest.raises(AssertionError, match="not one of this service's backups"):
        _check_safe([foreign], backups, LOCATION, NAMES, OWNER, None)
    unowned = StoredBackup(name=backups[1].name, key=backups[1].key, size=1, time=backups[1].time, metadata={})
    with pytest.raises(AssertionError, match="not one of this service's backups"):
        _check_safe([unowned], backups, LOCATION, NAMES, OWNER, None)


def test_report_lines_say_why():
    policy = RetentionPolicy(last=1, weekly=1)
    report = PruneReport(
        dry_run=False,
        decisions=apply_retention([backup(28), backup(27), backup(20)], policy),
        removal_reason=removal_reason(policy),
        deleted=["shop_backup_20261127_030000.sql.gz"],
        failed=[("shop_backup_20261120_030000.sql.gz", "AccessDenied (HTTP 403)")],
    )
    assert report.lines() == [
        "keep    shop_backup_20261128_030000.sql.gz  (last #1, weekly 2026-W48)",
        "deleted shop_backup_20261127_030000.sql.gz  (kept by no rule of last=1,weekly=1)",
        "FAILED  shop_backup_20261120_030000.sql.gz  could not be deleted: AccessDenied (HTTP 403)",
    ]
