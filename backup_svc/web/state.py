"""The state one worker process keeps, and the one way views reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from backup_svc.config import Settings
from backup_svc.dump.registry import BackupRegistry
from backup_svc.history.hooks import audit_sink, history_for, outcome_sink
from backup_svc.history.trail import History
from backup_svc.notify.stored import StoredSetup, reporter_for
from backup_svc.notify.reporter import Reporter
from backup_svc.pg.binaries import PgBinary, find_binaries
from backup_svc.pg.facts import BackgroundFacts, CachedFacts
from backup_svc.web.audit import AuditTrail
from backup_svc.web.throttle import AuthThrottle

EXTENSION = "backup_svc"
READINESS_TTL_S = 5


@dataclass
class BackupService:
    """The state one worker process keeps: settings, running dumps, the installed pg_dumps,
    failed logins per address, the latest backup attempts, what notifications and drills did, and the
    stored backups."""

    settings: Settings
    registry: BackupRegistry = field(init=False)
    pg_dumps: list[PgBinary] = field(init=False)
    throttle: AuthThrottle = field(init=False)
    audit: AuditTrail = field(init=False)
    facts: CachedFacts = field(init=False)
    reporter: Reporter = field(init=False)
    setup: StoredSetup = field(init=False)
    readiness: BackgroundFacts = field(init=False)
    # The durable history (in the bucket with storage, else memory): audit entries and outcomes of every process.
    history: History = field(init=False)
    # Stored backups (runs/scheduler.py's StoredBackups) when BACKUP_STORAGE_URL is set; made by create_app.
    stored: Any = field(init=False, default=None)
    # Restores, undo and drop (web/restore_jobs.py's RestoreJobs); made by create_app.
    restores: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.registry = BackupRegistry(self.settings.max_concurrent)
        self.pg_dumps = find_binaries("pg_dump", self.settings.pg_bin_dirs)
        self.throttle = AuthThrottle(self.settings.auth_failures_per_minute)
        self.audit = AuditTrail()
        self.facts = CachedFacts(self.settings.conn)
        self.setup = StoredSetup(
            self.settings.dump, self.settings.storage, self.settings.notify, self.settings.encryption
        )
        self.reporter = reporter_for(self.setup)
        storage = self.settings.storage
        self.history = history_for(
            "serve", storage.location if storage else None, storage.client_env if storage else None
        )
        self.audit.sink = audit_sink(self.history)
        self.reporter.history = outcome_sink(self.history)
        # /readyz is public: however often it is called, at most one connection per READINESS_TTL_S,
        # and no caller waits for it (a hung database would hold every request thread).
        self.readiness = BackgroundFacts(
            self.settings.conn,
            ttl_s=READINESS_TTL_S,
            error_ttl_s=READINESS_TTL_S,
            timeout_s=min(self.settings.connect_timeout_s, 5),
        )


def service() -> BackupService:
    """The current app's BackupService (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
