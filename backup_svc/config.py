"""Settings read from the environment (and `.env`), validated once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

from backup_svc.crypto.settings import EncryptionSettings, encryption_settings
from backup_svc.draining import RAILWAY_MARKERS, Draining
from backup_svc.draining import VARIABLE as DRAINING_VARIABLE
from backup_svc.dump.options import DumpOptions
from backup_svc.notify.settings import NotifySettings, notify_settings
from backup_svc.pg.binaries import default_pg_bin_dirs, pg_bin_dirs
from backup_svc.pg.conninfo import ConnInfo, parse_database_url
from backup_svc.problems import ConfigError
from backup_svc.restoring.settings import (
    DEFAULT_JOBS,
    DEFAULT_SWAP_TIMEOUT_S,
    JOBS_RANGE,
    SWAP_TIMEOUT_RANGE,
    RestoreSettings,
    restore_settings,
)
from backup_svc.storage.settings import StorageSettings, storage_settings

MIN_SECRET_LENGTH = 16


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be a whole number, got {raw!r}")
        return default
    if not low <= value <= high:
        problems.append(f"{name} must be between {low} and {high}, got {value}")
        return default
    return value


@dataclass(frozen=True)
class NumberSetting:
    """A whole-number setting: its variable, the Settings field it fills, its default and allowed range."""

    variable: str
    field: str
    default: int
    low: int
    high: int


# Every numeric setting, once: Settings' defaults, validation and the docs' ranges come from here.
NUMBER_SETTINGS = (
    NumberSetting("PORT", "port", 8080, 1, 65535),
    NumberSetting("BACKUP_MAX_CONCURRENT", "max_concurrent", 1, 1, 64),
    NumberSetting("BACKUP_LOCK_TIMEOUT", "lock_timeout_s", 60, 1, 3600),
    NumberSetting("BACKUP_CONNECT_TIMEOUT", "connect_timeout_s", 10, 1, 600),
    # A running dump whose pg_dump writes nothing for this long is broken off (a stalled link).
    NumberSetting("BACKUP_STALL_TIMEOUT", "stall_timeout_s", 300, 1, 86400),
    NumberSetting("WEB_THREADS", "threads", 8, 2, 256),
    NumberSetting("GRACEFUL_TIMEOUT", "graceful_timeout_s", 60, 1, 86400),
    # At most an hour: a signed link is a bearer credential in a URL, so it must be short-lived.
    NumberSetting("LINK_MAX_TTL", "link_max_ttl_s", 600, 1, 3600),
    NumberSetting("AUTH_FAILURES_PER_MINUTE", "auth_failures_per_minute", 10, 1, 100000),
    # 0: clients connect directly, so X-Forwarded-* are whatever the client says and are ignored.
    NumberSetting("TRUSTED_PROXY_HOPS", "trusted_proxy_hops", 0, 0, 5),
    NumberSetting("BACKUP_GZIP_LEVEL", "gzip_level", 1, 1, 9),
    # A year and a month: last year's same-month history is still there to compare with.
    NumberSetting("BACKUP_HISTORY_DAYS", "history_days", 400, 1, 36500),
)
_NUMBER = {n.variable: n for n in NUMBER_SETTINGS}


def _number(env: Mapping[str, str], variable: str, problems: list[str]) -> int:
    spec = _NUMBER[variable]
    return _int(env, spec.variable, spec.default, spec.low, spec.high, problems)


DEFAULT_BIND_HOST = "::"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to run, already validated (numeric defaults: NUMBER_SETTINGS)."""

    conn: ConnInfo
    admin_token: str | None = None
    admin_username: str = "admin"
    admin_password: str | None = None
    backup_name: str = ""
    pg_bin_dirs: list[str] = field(default_factory=default_pg_bin_dirs)
    link_secret: str | None = None
    port: int = _NUMBER["PORT"].default
    max_concurrent: int = _NUMBER["BACKUP_MAX_CONCURRENT"].default
    lock_timeout_s: int = _NUMBER["BACKUP_LOCK_TIMEOUT"].default
    connect_timeout_s: int = _NUMBER["BACKUP_CONNECT_TIMEOUT"].default
    stall_timeout_s: int = _NUMBER["BACKUP_STALL_TIMEOUT"].default
    threads: int = _NUMBER["WEB_THREADS"].default
    graceful_timeout_s: int = _NUMBER["GRACEFUL_TIMEOUT"].default
    link_max_ttl_s: int = _NUMBER["LINK_MAX_TTL"].default
    auth_failures_per_minute: int = _NUMBER["AUTH_FAILURES_PER_MINUTE"].default
    trusted_proxy_hops: int = _NUMBER["TRUSTED_PROXY_HOPS"].default
    gzip_level: int = _NUMBER["BACKUP_GZIP_LEVEL"].default
    history_days: int = _NUMBER["BACKUP_HISTORY_DAYS"].default
    # BIND_HOST: "::" is every interface (IPv4 too, through the dual-stack socket); "localhost" is
    # 127.0.0.1 and ::1 only (the demo's default).
    bind_host: str = DEFAULT_BIND_HOST
    draining: Draining = field(default_factory=Draining)
    # Object storage (BACKUP_STORAGE_URL, AWS_*, BACKUP_SCHEDULE, BACKUP_RETENTION); None when off.
    storage: StorageSettings | None = None
    # Notifications and restore drills (SMTP_URL, NOTIFY_*, HEARTBEAT_URL, RESTORE_DRILL_URL); None: none set up.
    notify: NotifySettings | None = None
    # RESTORE_TOKEN and RESTORE_SWAP_TIMEOUT (restoring/settings.py)
    restore: RestoreSettings = field(default_factory=RestoreSettings)

    @property
    def dump(self) -> DumpOptions:
        """The options a dump uses (the dump room takes these, never the whole Settings)."""
        return DumpOptions(
            conn=self.conn,
            backup_name=self.backup_name,
            pg_bin_dirs=self.pg_bin_dirs,
            connect_timeout_s=self.connect_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
            stall_timeout_s=self.stall_timeout_s,
            gzip_level=self.gzip_level,
        )

    # age encryption (BACKUP_AGE_RECIPIENTS, BACKUP_AGE_IDENTITY): stored backups encrypted when recipients are set.
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)

    @property
    def grace_s(self) -> int:
        """Seconds running downloads get after SIGTERM: GRACEFUL_TIMEOUT kept inside Railway's draining."""
        return self.draining.grace_s(self.graceful_timeout_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_auth: bool = True) -> "Settings":
        """Build settings from `env` (default: os.environ); raise ConfigError listing every problem."""
        env = os.environ if env is None else env
        problems: list[str] = []

        url = env.get("DATABASE_URL", "").strip()
        conn = None
        if not url:
            problems.append("DATABASE_URL is not set (e.g. postgresql://user:password@host:5432/dbname)")
        else:
            try:
                conn = parse_database_url(url)
            except ValueError as exc:
                problems.append(f"DATABASE_URL {exc}")

        secrets = {name: env.get(name) or None for name in ("ADMIN_TOKEN", "ADMIN_PASSWORD", "LINK_SECRET")}
        for name, value in secrets.items():
            if value is not None and len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters long")
        if require_auth and not (secrets["ADMIN_TOKEN"] or secrets["ADMIN_PASSWORD"]):
            problems.append("neither ADMIN_TOKEN nor ADMIN_PASSWORD is set: nobody could log in")
        numbers = {spec.field: _number(env, spec.variable, problems) for spec in NUMBER_SETTINGS}
        if not env.get("TRUSTED_PROXY_HOPS", "").strip() and behind_railway_edge(env):
            numbers["trusted_proxy_hops"] = 1
        draining = draining_from_env(env, problems)

        backup_name = env.get("BACKUP_NAME", "").strip()
        if backup_name and not all(c.isalnum() or c in "-_." for c in backup_name):
            problems.append("BACKUP_NAME may contain only letters, digits, '-', '_' and '.'")
        bin_dirs = pg_bin_dirs(env)
        storage = storage_settings(env, problems)
        if storage is not None:  # the rooms below read the history's retention from the storage settings
            storage = replace(storage, history_days=numbers["history_days"])
        notify = notify_settings(env, problems, source=conn)
        restore = restore_from_env(env, problems)
        encryption = encryption_settings(env, problems)

        if problems:
            raise ConfigError(problems)
        assert conn is not None
        return cls(
            conn=conn,
            admin_token=secrets["ADMIN_TOKEN"],
            admin_username=env.get("ADMIN_USERNAME") or "admin",
            admin_password=secrets["ADMIN_PASSWORD"],
            backup_name=backup_name or _filename_safe(conn.dbname),
            pg_bin_dirs=bin_dirs,
            link_secret=secrets["LINK_SECRET"],
            bind_host=bind_host_from_env(env),
            draining=draining,
            storage=storage,
            notify=notify,
            restore=restore,
            encryption=encryption,
            **numbers,
        )


def restore_from_env(env: Mapping[str, str], problems: list[str]) -> RestoreSettings:
    """RESTORE_TOKEN, RESTORE_SWAP_TIMEOUT (seconds, 1-600) and RESTORE_JOBS (1-64), for `serve` and the
    shell's `restore --replace`."""
    swap_timeout_s = _int(env, "RESTORE_SWAP_TIMEOUT", DEFAULT_SWAP_TIMEOUT_S, *SWAP_TIMEOUT_RANGE, problems)
    jobs = _int(env, "RESTORE_JOBS", DEFAULT_JOBS, *JOBS_RANGE, problems)
    return restore_settings(env, problems, swap_timeout_s, jobs)


def bind_host_from_env(env: Mapping[str, str], default: str = DEFAULT_BIND_HOST) -> str:
    """BIND_HOST without brackets (`[::1]` → `::1`), or `default` when it is unset or empty."""
    return (env.get("BIND_HOST") or "").strip().strip("[]") or default


def port_from_env(env: Mapping[str, str]) -> int:
    """PORT, or its default; ConfigError when it is not a port number."""
    problems: list[str] = []
    port = _number(env, "PORT", problems)
    if problems:
        raise ConfigError(problems)
    return port


def draining_from_env(env: Mapping[str, str], problems: list[str]) -> Draining:
    """RAILWAY_DEPLOYMENT_DRAINING_SECONDS (None when unset) and whether Railway's own variables are there."""
    on_railway = any(env.get(name) for name in RAILWAY_MARKERS)
    if not env.get(DRAINING_VARIABLE, "").strip():
        return Draining(None, on_railway)
    return Draining(_int(env, DRAINING_VARIABLE, 0, 0, 86400, problems), on_railway)


def behind_railway_edge(env: Mapping[str, str]) -> bool:
    """Whether Railway's edge proxy stands in front: Railway sets RAILWAY_PUBLIC_DOMAIN when the
    service has a public domain (docs.railway.com, "Railway-provided variables").

    Then TRUSTED_PROXY_HOPS defaults to 1: with 0 every public client would share the edge's
    address, and ten wrong guesses from anyone would lock the admin out too. An explicit
    TRUSTED_PROXY_HOPS wins.
    """
    return bool(env.get("RAILWAY_PUBLIC_DOMAIN", "").strip())


def link_signing_from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, int]:
    """LINK_SECRET and LINK_MAX_TTL alone (for `sign-url`, which needs no database); ConfigError if invalid."""
    env = os.environ if env is None else env
    problems: list[str] = []
    secret = env.get("LINK_SECRET") or None
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        problems.append(f"LINK_SECRET must be at least {MIN_SECRET_LENGTH} characters long")
    max_ttl = _number(env, "LINK_MAX_TTL", problems)
    if problems:
        raise ConfigError(problems)
    return secret, max_ttl


def _filename_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "database"


def load_dotenv_file() -> None:
    """Read `.env` from the working directory; variables already set in the environment win."""
    from dotenv import load_dotenv

    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
