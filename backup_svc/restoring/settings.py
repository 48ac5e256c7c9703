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


def swap_timeout_from_env(env: Mapping[str, str], problems: list[str]) -> int:
    """RESTORE_SWAP_TIMEOUT in seconds (default 30), or a problem line."""
    raw = env.get("RESTORE_SWAP_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_SWAP_TIMEOUT_S
    low, high = SWAP_TIMEOUT_RANGE
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"RESTORE_SWAP_TIMEOUT must be a whole number of seconds, got {raw!r}")
        return DEFAULT_SWAP_TIMEOUT_S
    if not low <= value <= high:
        problems.append(f"RESTORE_SWAP_TIMEOUT must be between {low} and {high}, got {value}")
        return DEFAULT_SWAP_TIMEOUT_S
    return value


def restore_settings(env: Mapping[str, str], problems: list[str]) -> RestoreSettings:
    """Read RESTORE_TOKEN and RESTORE_SWAP_TIMEOUT; append one line per problem to `problems`."""
    token = env.get("RESTORE_TOKEN") or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        problems.append(f"RESTORE_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long")
    if token is not None and token == (env.get("ADMIN_TOKEN") or None):
        # The same value would let the read-only token restore, undo and drop: the point of two rights.
        problems.append("RESTORE_TOKEN must differ from ADMIN_TOKEN (ADMIN_TOKEN may only read and start backups)")
    return RestoreSettings(token=token, swap_timeout_s=swap_timeout_from_env(env, problems))
