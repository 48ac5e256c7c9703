"""The one rule for a backup's id (`?progress_id=` and `/api/v1/backups/<backup_id>`): 8 to 64 URL-safe characters."""

from __future__ import annotations

import re

from backup_svc.web.errors import api_abort

_BACKUP_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
BAD_BACKUP_ID = "progress_id must be 8 to 64 characters from A-Z, a-z, 0-9, '-' and '_'."


def is_backup_id(value: str) -> bool:
    """Whether `value` may name a backup."""
    return _BACKUP_ID.fullmatch(value) is not None


def require_backup_id(value: str | None) -> None:
    """400 with BAD_BACKUP_ID unless `value` is None (not given) or a valid id.

    Checked in the view, after the credentials: a malformed id from someone not logged in gets 401.
    """
    if value is not None and not is_backup_id(value):
        api_abort(400, BAD_BACKUP_ID)
