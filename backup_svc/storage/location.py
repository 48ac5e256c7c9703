"""Where stored backups live: `s3://bucket/prefix` and the object names this service owns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

# S3's bucket naming rules (3–63 characters: lowercase letters, digits, dots, hyphens); providers
# that allow more (underscores on older buckets) are still reached by a name that fits these.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_STAMP = "%Y%m%d_%H%M%S"


@dataclass(frozen=True)
class StorageLocation:
    """A bucket and a key prefix ("" or ending in "/") under which this service keeps its backups."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The object key of the backup called `name` (a download filename)."""
        return self.prefix + name


def parse_storage_url(url: str) -> StorageLocation:
    """Parse `s3://bucket/prefix`; ValueError says what is wrong.

    A non-empty prefix names a folder: `s3://b/backups` and `s3://b/backups/` both store
    `backups/<name>`, which is what someone typing either expects.
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise ValueError("must look like s3://<bucket>/<prefix> (the prefix may be empty)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query (?…) or fragment (#…): put them nowhere, or in the prefix")
    bucket = parts.netloc
    if "@" in bucket or ":" in bucket:
        raise ValueError(
            "must not carry credentials or a port: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "and AWS_ENDPOINT_URL instead"
        )
    if not _BUCKET.match(bucket):
        raise ValueError(f"names no valid bucket ({bucket!r}: 3–63 lowercase letters, digits, '.', '-')")
    prefix = parts.path.lstrip("/")
    if "//" in prefix or prefix.startswith("."):
        raise ValueError(f"has an odd prefix {prefix!r} (empty path segments or a leading dot)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return StorageLocation(bucket=bucket, prefix=prefix)


def parse_object_url(url: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key) for `verify`/`restore`; ValueError when it names no object."""
    parts = urlsplit(url.strip())
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not _BUCKET.match(parts.netloc) or not key or key.endswith("/"):
        raise ValueError(f"{url!r} names no object: expected s3://<bucket>/<key>")
    return parts.netloc, key


class BackupNames:
    """The names of one service's backups: `<BACKUP_NAME>_backup_<YYYYMMDD_HHMMSS>.sql.gz` (UTC), the
    same with `.age` for an age-encrypted one, and `….sql.dedup` for a dedup backup's manifest (a bucket may
    hold all three: they list, prune and restore alike).

    Only names matching this exactly are ever listed, kept or deleted: other files under the prefix,
    and other databases' backups sharing it, are never touched.
    """

    def __init__(self, backup_name: str):
        self.backup_name = backup_name
        self._pattern = re.compile(
            rf"{re.escape(backup_name)}_backup_(\d{{8}}_\d{{6}})\.sql\.(?:gz(?:\.age)?|dedup)", re.ASCII
        )

    def time_of(self, name: str) -> datetime | None:
        """The UTC time in a matching name; None for any other name (or an impossible date)."""
        match = self._pattern.fullmatch(name)
        if not match:
            return None
        try:
            return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
