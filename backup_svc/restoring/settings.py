"""The restore settings: RESTORE_TOKEN (who may change databases from a script), RESTORE_SWAP_TIMEOUT
and RESTORE_JOBS (connections of a dashboard restore)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# A swap keeps the application out of its database: half a minute is long enough to end sessions
# and rename twice on a loaded server, short enough that a stuck swap gives the database back soon.
DEFAULT_SWAP_TIMEOUT_S = 30
SWAP_TIMEOUT_RANGE = (1, 600)
MIN_TOKEN_LENGTH = 16
# A dashboard restore goes into a new database, so it may run on several connections (backup_svc/
# parallel): 2 lets the load and the index builds use two of the database server's cores (on Railway
# the service and Postgres are separate containers) while leaving the live application room on a small
# server; it costs ~30 MB more memory and measured no slower than 1 where client and server share two
# cores (bench/README.md). Set it to the server's free cores; 1 is one transaction, as before.
DEFAULT_JOBS = 2
JOBS_RANGE = (1, 64)


@dataclass(frozen=True)
class RestoreSettings:
    """RESTORE_TOKEN (None: only the browser login may restore), the swap's deadline in seconds and
    the connections a dashboard restore loads the data and builds the indexes on."""

    token: str | None = None
    swap_timeout_s: int = DEFAULT_SWAP_TIMEOUT_S
    jobs: int = DEFAULT_JOBS


def restore_settings(
    env: Mapping[str, str], problems: list[str], swap_timeout_s: int, jobs: int = DEFAULT_JOBS
) -> RestoreSettings:
    """Read RESTORE_TOKEN (the swap's limit and the jobs come validated from config); one line per problem."""
    token = env.get("RESTORE_TOKEN") or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        problems.append(f"RESTORE_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long")
    if token is not None and token == (env.get("ADMIN_TOKEN") or None):
        # The same value would let the read-only token restore, undo and drop: the point of two rights.
        problems.append("RESTORE_TOKEN must differ from ADMIN_TOKEN (ADMIN_TOKEN may only read and start backups)")
    return RestoreSettings(token=token, swap_timeout_s=swap_timeout_s, jobs=jobs)
