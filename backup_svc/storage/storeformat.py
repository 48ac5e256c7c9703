"""BACKUP_STORAGE_FORMAT: how stored backups are laid out in the bucket.

`sqlgz` (the default) is one `.sql.gz` object per backup. `dedup` (content-defined chunks stored once
plus a manifest per backup, issue 28) is a name the product contract reserves but this version does
not implement yet: it is refused at start-up, one clear line, rather than accepted and silently
stored as `sqlgz` or half-supported.
"""
from __future__ import annotations

SQLGZ = "sqlgz"
DEDUP = "dedup"
DEFAULT_FORMAT = SQLGZ
SUPPORTED = (SQLGZ,)


def parse_storage_format(value: str) -> str:
    """The stored format named by `value` (empty = the default); ValueError with the reason otherwise."""
    name = value.strip().lower()
    if not name:
        return DEFAULT_FORMAT
    if name in SUPPORTED:
        return name
    if name == DEDUP:
        raise ValueError("is 'dedup', which this version does not support yet (deduplicated stored backups "
                         "are not built; see docs/storage.md): unset it or set it to 'sqlgz'")
    raise ValueError(f"must be 'sqlgz' (or, once available, 'dedup'), not {value.strip()[:40]!r}")
