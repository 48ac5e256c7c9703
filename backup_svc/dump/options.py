"""What a dump needs to know: the database, the filename prefix, where pg_dump is, and its limits.

`config.Settings.dump` builds these from the environment; the dump room never reads Settings itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from backup_svc.pg.conninfo import ConnInfo


@dataclass(frozen=True)
class DumpOptions:
    """The few settings a dump uses (their defaults and ranges: config.NUMBER_SETTINGS)."""

    conn: ConnInfo
    backup_name: str  # the filename prefix
    pg_bin_dirs: list[str]
    connect_timeout_s: int
    lock_timeout_s: int
    stall_timeout_s: int
    gzip_level: int
