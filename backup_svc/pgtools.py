"""Finding PostgreSQL client binaries and choosing the pg_dump that can dump a given server."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgBinary:
    """One installed PostgreSQL program and the version it reports."""

    path: str
    version: str  # e.g. "15.18"
    major: int


class IncompatibleServer(Exception):
    """No installed pg_dump can dump the server's major version."""

    def __init__(self, server_version: str, available: list[PgBinary]):
        self.server_version = server_version
        self.available = available
        have = ", ".join(b.version for b in available) or "none"
        super().__init__(
            f"The database runs PostgreSQL {server_version}, but no installed pg_dump can dump it "
            f"(a pg_dump of the same or a newer major is needed; installed: {have}). "
            f"Install postgresql-client-{server_version.split('.')[0]} or set PG_BIN_DIRS."
        )


def binary_version(path: str) -> PgBinary | None:
    """Ask a PostgreSQL program for its version; None when it does not run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out)
    if not match:
        return None
    major = int(match.group(1))
    version = f"{major}.{match.group(2)}" if match.group(2) else str(major)
    return PgBinary(path=path, version=version, major=major)


def find_binaries(name: str, bin_dirs: list[str]) -> list[PgBinary]:
    """Every runnable `name` in `bin_dirs`, one per major (the first found wins), lowest major first."""
    by_major: dict[int, PgBinary] = {}
    seen: set[str] = set()
    for folder in bin_dirs:
        path = os.path.join(folder, name)
        real = os.path.realpath(path)
        if real in seen or not os.access(path, os.X_OK) or os.path.isdir(path):
            continue
        seen.add(real)
        found = binary_version(path)
        if found and found.major not in by_major:
            by_major[found.major] = found
    return [by_major[m] for m in sorted(by_major)]


def server_major(server_version_num: int) -> int:
    """Major version from `server_version_num` (150018 -> 15; 90624, i.e. 9.6, -> 9)."""
    return server_version_num // 10000


def pick_binary(server_version_num: int, server_version: str, installed: list[PgBinary]) -> PgBinary:
    """The installed binary of the server's major, else the lowest newer one; else IncompatibleServer."""
    major = server_major(server_version_num)
    newer_or_same = [b for b in installed if b.major >= major]
    if not newer_or_same:
        raise IncompatibleServer(server_version, installed)
    return min(newer_or_same, key=lambda b: b.major)
