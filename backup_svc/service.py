"""What a backup needs besides the pipeline: the service's state, choosing pg_dump, naming the file."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from .audit import AuditTrail
from .config import Settings
from .database import CachedFacts, ServerFacts, server_facts
from .diagnose import INCOMPATIBLE, CannotDump
from .pgtools import IncompatibleServer, PgBinary, find_binaries, pick_binary, server_major
from .pipeline import DumpProgress, GzipDump, pg_dump_command
from .registry import BackupRegistry
from .throttle import AuthThrottle


def backup_filename(prefix: str, when: datetime | None = None) -> str:
    """`<prefix>_backup_<YYYYMMDD_HHMMSS>.sql.gz`, UTC."""
    when = when or datetime.now(timezone.utc)
    return f"{prefix}_backup_{when.astimezone(timezone.utc):%Y%m%d_%H%M%S}.sql.gz"


def choose_pg_dump(facts: ServerFacts, installed: list[PgBinary]) -> PgBinary:
    """The pg_dump for this server; CannotDump(INCOMPATIBLE) naming the versions when there is none."""
    try:
        return pick_binary(facts.version_num, facts.version, installed)
    except IncompatibleServer as exc:
        raise CannotDump(INCOMPATIBLE, str(exc)) from None


def restore_caveat(facts: ServerFacts, chosen: PgBinary) -> str | None:
    """A warning when `chosen` is newer than the server: its dump may not restore into the server's major."""
    server = server_major(facts.version_num)
    if chosen.major <= server:
        return None
    return (f"pg_dump {chosen.version} is newer than the server (PostgreSQL {facts.version}): its backups "
            f"restore reliably only into PostgreSQL {chosen.major} or newer. Install "
            f"postgresql-client-{server} (or add its folder to PG_BIN_DIRS) for backups that restore into {server}.")


def open_dump(settings: Settings, installed: list[PgBinary], *, application_name: str,
              progress: DumpProgress | None = None) -> tuple[GzipDump, ServerFacts, PgBinary]:
    """Check the server, pick pg_dump and start it; return once its first byte is out.

    Raises CannotDump (with a secret-free message) for everything that fails before that byte.
    """
    facts = server_facts(settings.conn, timeout_s=settings.connect_timeout_s)
    pg_dump = choose_pg_dump(facts, installed)
    command = pg_dump_command(
        pg_dump.path, settings.conn, application_name=application_name,
        lock_timeout_s=settings.lock_timeout_s, connect_timeout_s=settings.connect_timeout_s,
    )
    dump = GzipDump(command, level=settings.gzip_level, secrets=(settings.conn.password,), progress=progress)
    dump.start()
    return dump, facts, pg_dump


@dataclass
class BackupService:
    """The state one worker process keeps: settings, running dumps, the installed pg_dumps,
    failed logins per address and the latest backup attempts."""

    settings: Settings
    registry: BackupRegistry = field(init=False)
    pg_dumps: list[PgBinary] = field(init=False)
    throttle: AuthThrottle = field(init=False)
    audit: AuditTrail = field(init=False)
    facts: CachedFacts = field(init=False)

    def __post_init__(self) -> None:
        self.registry = BackupRegistry(self.settings.max_concurrent)
        self.pg_dumps = find_binaries("pg_dump", self.settings.pg_bin_dirs)
        self.throttle = AuthThrottle(self.settings.auth_failures_per_minute)
        self.audit = AuditTrail()
        self.facts = CachedFacts(self.settings.conn)
