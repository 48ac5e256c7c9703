"""Where stored backups go: s3:// URLs and which names are this service's."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from backup_svc.dump.backup import backup_filename
from backup_svc.storage.location import BackupNames, parse_object_url, parse_storage_url


@pytest.mark.parametrize(
    "url, bucket, prefix",
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my-bucket/backups", "my-bucket", "backups/"),
        ("s3://my-bucket/backups/", "my-bucket", "backups/"),
        ("s3://my.bucket-1/a/b/c", "my.bucket-1", "a/b/c/"),
        ("  s3://abc/x  ", "abc", "x/"),
    ],
)
def test_storage_urls(url, bucket, prefix):
    location = parse_storage_url(url)
    assert (location.bucket, location.prefix) == (bucket, prefix)
    assert location.key("db_backup_20261128_030000.sql.gz") == f"{prefix}db_backup_20261128_030000.sql.gz"


@pytest.mark.parametrize(
    "url, message",
    [
        ("https://my-bucket/x", "must look like s3://"),
        ("my-bucket/x", "must look like s3://"),
        ("s3://", "names no valid bucket"),
        ("s3://ab/x", "names no valid bucket"),
        ("s3://My_Bucket/x", "names no valid bucket"),
        ("s3://key:secret@my-bucket/x", "must not carry credentials"),
        ("s3://my-bucket/a//b", "odd prefix"),
        ("s3://my-bucket/x?versionId=1", "must not have a query"),
    ],
)
def test_bad_storage_urls_say_what_is_wrong(url, message):
    with pytest.raises(ValueError, match=message):
        parse_storage_url(url)


def test_object_urls():
    assert parse_object_url("s3://my-bucket/backups/db_backup_20261128_030000.sql.gz") == (
        "my-bucket",
        "backups/db_backup_20261128_030000.sql.gz",
    )
    for bad in ("s3://my-bucket/", "s3://my-bucket", "/tmp/file.sql.gz", "s3://my-bucket/folder/"):
        with pytest.raises(ValueError, match="names no object"):
            parse_object_url(bad)


def test_names_match_the_download_filename_and_nothing_else():
    names = BackupNames("shop.v2")
    when = datetime(2026, 11, 28, 3, 4, 5, tzinfo=timezone.utc)
    assert names.time_of(backup_filename("shop.v2", when)) == when
    for other in (
        "shopXv2_backup_20261128_030405.sql.gz",  # the dot is literal
        "shop.v2_backup_20261128_030405.sql.gz.partial",
        "shop.v2_backup_20261128_030405.sql",
        "orders_backup_20261128_030405.sql.gz",
        "x/shop.v2_backup_20261128_030405.sql.gz",
        "shop.v2_backup_20261128_250000.sql.gz",
        "shop.v2_backup_20260230_000000.sql.gz",
        "shop.v2_backup_2026112_030405.sql.gz",
        "shop.v2_backup_20261128_030405.sql.gz\n",
    ):
        assert names.time_of(other) is None, other
