"""The restore settings: RESTORE_TOKEN (who may change databases from a script) and RESTORE_SWAP_TIMEOUT."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# A swap keeps the application out of its database: half a minute is long enough to end sessions
# and rename twice on a loaded server, short enough that a stuck swap gives the database back soon.
DEFAULT_SWAP_TIMEOUT_S = 30
SWAP_TIMEOUT_RANGE = (1, 600)
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class RestoreSettings:
    """RESTORE_TOKEN (None: only the browser login may restore) and the swap's deadline in seconds."""

    token: str | None = None
    swap_timeout_s: int = DEFAULT_SWAP_TIMEOUT_S


def restore_settings(env: Mapping[str, str], problems: list[str], swap_timeout_s: int) -> RestoreSettings:
    """Read RESTORE_TOKEN (the swap's limit comes validated from config); one line per problem in `problems`."""
    token = env.get("RESTORE_TOKEN") or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        problems.append(f"RESTORE_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long")
    if token is not None and token == (env.get("ADMIN_TOKEN") or None):
        # The same value would let the read-only token restore, undo and drop: the point of two rights.
        problems.append("RESTORE_TOKEN must differ from ADMIN_TOKEN (ADMIN_TOKEN may only read and start backups)")
    return RestoreSettings(token=token, swap_timeout_s=swap_timeout_s)
