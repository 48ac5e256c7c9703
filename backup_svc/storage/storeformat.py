"""BACKUP_STORAGE_FORMAT: how stored backups are laid out in the bucket.

`sqlgz` (the default) is one `.sql.gz` object per backup. `dedup` is content-defined chunks stored once
plus a manifest per backup (backup_svc/storage/dedup/, issue 28); it needs BACKUP_DEDUP_KEY.
"""

from __future__ import annotations

SQLGZ = "sqlgz"
DEDUP = "dedup"
DEFAULT_FORMAT = SQLGZ
SUPPORTED = (SQLGZ, DEDUP)
# BACKUP_DEDUP_KEY: the HMAC key that names chunks; as long as the other secrets at least (config.py).
MIN_DEDUP_KEY_LENGTH = 16


def parse_storage_format(value: str) -> str:
    """The stored format named by `value` (empty = the default); ValueError with the reason otherwise."""
    name = value.strip().lower()
    if not name:
        return DEFAULT_FORMAT
    if name in SUPPORTED:
        return name
    raise ValueError(f"must be 'sqlgz' or 'dedup', not {value.strip()[:40]!r}")


def dedup_key_problem(storage_format: str, key: str) -> str | None:
    """What is wrong with BACKUP_DEDUP_KEY for `storage_format`, in one line; None when nothing is."""
    if storage_format == DEDUP and not key:
        return (
            "BACKUP_DEDUP_KEY is not set, and BACKUP_STORAGE_FORMAT=dedup needs it: a random secret of at least "
            f"{MIN_DEDUP_KEY_LENGTH} characters (e.g. `openssl rand -hex 32`), kept as safe as the bucket's "
            "credentials — restores check each chunk with it"
        )
    if key and len(key) < MIN_DEDUP_KEY_LENGTH:
        return f"BACKUP_DEDUP_KEY must be at least {MIN_DEDUP_KEY_LENGTH} characters long"
    return None
