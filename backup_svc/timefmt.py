"""Time, once for the package: now in UTC, and ISO 8601 in UTC with a `Z` as people and JSON read it."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def iso(when: datetime | None, timespec: str = "seconds") -> str | None:
    """`2026-11-28T19:12:04Z` for an aware datetime (None for None)."""
    if when is None:
        return None
    return when.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_utc(timestamp: float, timespec: str = "seconds") -> str:
    """`2026-11-28T19:12:04Z` for a Unix time (`timespec` as for `datetime.isoformat`)."""
    return iso(datetime.fromtimestamp(timestamp, timezone.utc), timespec)
