"""Finding PostgreSQL client binaries and choosing the pg_dump that can dump a given server."""

from __future__ import annotations

import glob
import os
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from backup_svc.pg.command import VERSION
from backup_svc.pg.diagnose import INCOMPATIBLE, CannotDump

if TYPE_CHECKING:
    from backup_svc.pg.facts import ServerFacts


def default_pg_bin_dirs() -> list[str]:
    """`/usr/lib/postgresql/*/bin`, newest major first, then every folder on PATH."""

    def major(path: str) -> float:
        try:
            return float(path.split("/")[-2])
        except ValueError:
            return 0.0

    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
    return versioned + [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]


def pg_bin_dirs(env: Mapping[str, str]) -> list[str]:
    """The folders `PG_BIN_DIRS` names (colon-separated), or the default search path when it is empty."""
    return [d for d in env.get("PG_BIN_DIRS", "").strip().split(":") if d] or default_pg_bin_dirs()


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
    # `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
    _, marker, rest = out.partition("(PostgreSQL)")
    match = VERSION.match(rest.strip()) if marker else None
    if not match:
        return None
    major = int(match.group(1))
    version = f"{major}.{match.group(2)}" if match.group(2) else str(major)
    return PgBinary(path=path, version=version, major=major)


# find_binaries answers started ahead by probe_soon, each taken once: (name, folders) -> (the thread finding
# them, the list it fills: the answer, or the exception it raised).
_PROBED: dict[tuple[str, tuple[str, ...]], tuple[threading.Thread, list]] = {}


def probe_soon(name: str, bin_dirs: list[str]) -> None:
    """Start `find_binaries(name, bin_dirs)` in a thread now; the next call with the same arguments takes its
    answer. Asking each installed program for its version takes ~0.05 s (0.04 s of it Debian's
    /usr/bin/pg_dump, a Perl wrapper): a command that will dump starts it first, and it runs while the
    command loads its modules instead of after."""
    answer: list = []

    def run() -> None:
        try:
            answer.append(_find_binaries(name, bin_dirs))
        except BaseException as exc:  # handed to the caller of find_binaries
            answer.append(exc)

    thread = threading.Thread(target=run, name=f"find-{name}", daemon=True)
    _PROBED[(name, tuple(bin_dirs))] = (thread, answer)
    thread.start()


def find_binaries(name: str, bin_dirs: list[str]) -> list[PgBinary]:
    """Every runnable `name` in `bin_dirs`, one per major (the first found wins), lowest major first."""
    probed = _PROBED.pop((name, tuple(bin_dirs)), None)
    if probed is None:
        return _find_binaries(name, bin_dirs)
    thread, answer = probed
    thread.join()
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def _find_binaries(name: str, bin_dirs: list[str]) -> list[PgBinary]:
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


def choose_pg_dump(facts: "ServerFacts", installed: list[PgBinary]) -> PgBinary:
    """The pg_dump for this server; CannotDump(INCOMPATIBLE) naming the versions when there is none."""
    try:
        return pick_binary(facts.version_num, facts.version, installed)
    except IncompatibleServer as exc:
        raise CannotDump(INCOMPATIBLE, str(exc)) from None


def restore_caveat(facts: "ServerFacts", chosen: PgBinary) -> str | None:
    """A warning when `chosen` is newer than the server: its dump may not restore into the server's major."""
    server = server_major(facts.version_num)
    if chosen.major <= server:
        return None
    return (
        f"pg_dump {chosen.version} is newer than the server (PostgreSQL {facts.version}): its backups "
        f"restore reliably only into PostgreSQL {chosen.major} or newer. Install "
        f"postgresql-client-{server} (or add its folder to PG_BIN_DIRS) for backups that restore into {server}."
    )
