"""Can this server be dumped now? Query its facts, then choose the pg_dump for it — in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from backup_svc.pg.binaries import PgBinary, choose_pg_dump, restore_caveat
from backup_svc.pg.diagnose import CannotDump
from backup_svc.pg.facts import ServerFacts


@dataclass(frozen=True)
class DumpReadiness:
    """The server's facts and the pg_dump chosen for them, or what stopped either."""

    facts: ServerFacts | None = None
    pg_dump: PgBinary | None = None
    facts_error: CannotDump | None = None  # the server could not be asked
    pg_dump_error: CannotDump | None = None  # it answered, but no installed pg_dump can dump it

    @property
    def problem(self) -> CannotDump | None:
        """The first thing that stops a dump, or None when one could start."""
        return self.facts_error or self.pg_dump_error

    @property
    def caveat(self) -> str | None:
        """A warning when the chosen pg_dump is newer than the server (see `restore_caveat`)."""
        return restore_caveat(self.facts, self.pg_dump) if self.facts and self.pg_dump else None


def dump_readiness(get_facts: Callable[[], ServerFacts], installed: list[PgBinary]) -> DumpReadiness:
    """Call `get_facts` (a fresh query or a cached one), then choose among the `installed` pg_dumps."""
    try:
        facts = get_facts()
    except CannotDump as exc:
        return DumpReadiness(facts_error=exc)
    try:
        return DumpReadiness(facts=facts, pg_dump=choose_pg_dump(facts, installed))
    except CannotDump as exc:
        return DumpReadiness(facts=facts, pg_dump_error=exc)
