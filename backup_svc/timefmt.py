"""Times as people and JSON read them: ISO 8601 in UTC with a `Z`."""
from __future__ import annotations

from datetime import datetime, timezone


def iso_utc(timestamp: float, timespec: str = "seconds") -> str:
    """`2026-11-28T19:12:04Z` for a Unix time (`timespec` as for `datetime.isoformat`)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")
