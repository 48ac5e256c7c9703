"""The names a restore gives databases, and which databases are the service's to list, swap back or drop."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

RESTORED, BEFORE_RESTORE = "restored", "before_restore"
# PostgreSQL keeps the first 63 bytes of a name and silently cuts the rest: a cut name could match
# another database, so a longer one is refused, never shortened.
MAX_NAME_BYTES = 63
# A name typed on the page: plain identifiers only, so no quoting mistake can matter anywhere.
_TYPED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STAMP = "%Y%m%d_%H%M%S"
RESERVED = ("postgres", "template0", "template1")


class BadName(ValueError):
    """A database name that cannot be used; the message says why."""


def stamp(when: datetime) -> str:
    """`20261204_223015` in UTC."""
    return when.astimezone(timezone.utc).strftime(_STAMP)


def kept_name(database: str, kind: str, when: datetime) -> str:
    """`<db>_restored_<YYYYMMDD_HHMMSS>` or `<db>_before_restore_<YYYYMMDD_HHMMSS>`; BadName when too long."""
    name = f"{database}_{kind}_{stamp(when)}"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadName(
            f"{name!r} is longer than PostgreSQL's {MAX_NAME_BYTES} bytes; choose a shorter name for the new database"
        )
    return name


def check_new_name(name: str, live: str) -> str:
    """A name typed for a new database: a plain identifier, not the live one, not a system database."""
    if not _TYPED_NAME.fullmatch(name or ""):
        raise BadName("a database name here is letters, digits and '_' and does not start with a digit")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise BadName(f"a database name is at most {MAX_NAME_BYTES} bytes")
    if name == live or name in RESERVED:
        raise BadName(f"{name!r} is not a new database: restore into a new name, or use mode 'replace'")
    return name


@dataclass(frozen=True)
class KeptName:
    """A database this service made or kept: which kind, and when (from its name)."""

    name: str
    kind: str  # RESTORED or BEFORE_RESTORE
    time: datetime


def parse_kept(database: str, name: str) -> KeptName | None:
    """The kept-database facts of `name` when it is `<database>_restored_…` / `_before_restore_…`, else None."""
    match = re.fullmatch(re.escape(database) + r"_(restored|before_restore)_(\d{8}_\d{6})", name)
    if match is None:
        return None
    try:
        when = datetime.strptime(match.group(2), _STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return KeptName(name=name, kind=match.group(1), time=when)
