"""Settings read from the environment (and `.env`), validated once at start-up."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .draining import RAILWAY_MARKERS, Draining
from .draining import VARIABLE as DRAINING_VARIABLE
from backup_svc.crypto.settings import EncryptionSettings, encryption_settings
from backup_svc.notify.settings import NotifySettings, notify_settings
from backup_svc.storage.settings import StorageSettings, storage_settings

MIN_SECRET_LENGTH = 16
_ENCODE_HINT = ("a '/', '?', '#', '@', '[' or ']' in the user name or password must be percent-encoded "
                "(%2F, %3F, %23, %40, %5B, %5D)")


class ConfigError(Exception):
    """The environment cannot run the service; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConnInfo:
    """A libpq URI split into what may be shown (argv, logs) and the password, which may not."""

    uri: str  # the URI without its password: safe for argv and logs
    password: str | None
    dbname: str
    host: str
    port: int | None
    user: str | None

    def libpq_env(self) -> dict[str, str]:
        """Environment variables that hand the password to a libpq client."""
        return {"PGPASSWORD": self.password} if self.password is not None else {}


def parse_database_url(url: str) -> ConnInfo:
    """Parse a `postgres://` / `postgresql://` URI; raise ValueError saying what is wrong."""
    # No message here may quote the URL: wherever parsing goes wrong, the text at hand may be part
    # of the password (urlsplit's own errors quote it, e.g. "could not be cast to integer value as 'pa'").
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"is not a valid URI; {_ENCODE_HINT}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must start with postgres:// or postgresql://")
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        # `user:pa/ss@host` parses as host "user", port "pa", database "ss@host": the part after the
        # '/', '?' or '#' would end up in pg_dump's argv and in error messages.
        raise ValueError(f"has an '@' after its host part; {_ENCODE_HINT}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = unquote(parts.password) if parts.password is not None else None
    kept_query = []
    for key, value in query:
        if key == "password":  # libpq also accepts the password as a query parameter
            password = value
        else:
            kept_query.append((key, value))
    dbname = unquote(parts.path.lstrip("/"))
    params = dict(kept_query)
    dbname = params.get("dbname", dbname)
    if not dbname:
        raise ValueError("names no database (expected postgresql://user:password@host:port/dbname)")
    host = parts.hostname or params.get("host", "")
    if not host:
        raise ValueError("names no host")
    user = unquote(parts.username) if parts.username is not None else params.get("user")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.username is not None:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    safe_uri = f"postgresql://{netloc}{parts.path}"
    if kept_query:
        safe_uri += "?" + urlencode(kept_query)
    return ConnInfo(uri=safe_uri, password=password, dbname=dbname, host=host, port=port, user=user)


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
class Number:
    """A whole-number setting: its variable, the Settings field it fills, its default and allowed range."""

    variable: str
    field: str
    default: int
    low: int
    high: int


# Every numeric setting, once: Settings' defaults, validation and the docs' ranges come from here.
NUMBERS = (
    Number("PORT", "port", 8080, 1, 65535),
    Number("BACKUP_MAX_CONCURRENT", "max_concurrent", 1, 1, 64),
    Number("BACKUP_LOCK_TIMEOUT", "lock_timeout_s", 60, 1, 3600),
    Number("BACKUP_CONNECT_TIMEOUT", "connect_timeout_s", 10, 1, 600),
    # A running dump whose pg_dump writes nothing for this long is broken off (a stalled link).
    Number("BACKUP_STALL_TIMEOUT", "stall_timeout_s", 300, 1, 86400),
    Number("WEB_THREADS", "threads", 8, 2, 256),
    Number("GRACEFUL_TIMEOUT", "graceful_timeout_s", 60, 1, 86400),
    # At most an hour: a signed link is a bearer credential in a URL, so it must be short-lived.
    Number("LINK_MAX_TTL", "link_max_ttl_s", 600, 1, 3600),
    Number("AUTH_FAILURES_PER_MINUTE", "auth_failures_per_minute", 10, 1, 100000),
    # 0: clients connect directly, so X-Forwarded-* are whatever the client says and are ignored.
    Number("TRUSTED_PROXY_HOPS", "trusted_proxy_hops", 0, 0, 5),
    Number("BACKUP_GZIP_LEVEL", "gzip_level", 1, 1, 9),
)
_NUMBER = {n.variable: n for n in NUMBERS}


def _number(env: Mapping[str, str], variable: str, problems: list[str]) -> int:
    spec = _NUMBER[variable]
    return _int(env, spec.variable, spec.default, spec.low, spec.high, problems)


DEFAULT_BIND_HOST = "::"


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to run, already validated (numeric defaults: NUMBERS)."""

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
    # BIND_HOST: "::" is every interface (IPv4 too, through the dual-stack socket); "localhost" is
    # 127.0.0.1 and ::1 only (the demo's default).
    bind_host: str = DEFAULT_BIND_HOST
    draining: Draining = field(default_factory=Draining)
    # Object storage (BACKUP_STORAGE_URL, AWS_*, BACKUP_SCHEDULE, BACKUP_RETENTION); None when off.
    storage: StorageSettings | None = None
    # Notifications and restore drills (SMTP_URL, NOTIFY_*, HEARTBEAT_URL, RESTORE_DRILL_URL); None: none set up.
    notify: NotifySettings | None = None
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
        numbers = {spec.field: _number(env, spec.variable, problems) for spec in NUMBERS}
        if not env.get("TRUSTED_PROXY_HOPS", "").strip() and behind_railway_edge(env):
            numbers["trusted_proxy_hops"] = 1
        draining = draining_from_env(env, problems)

        backup_name = env.get("BACKUP_NAME", "").strip()
        if backup_name and not all(c.isalnum() or c in "-_." for c in backup_name):
            problems.append("BACKUP_NAME may contain only letters, digits, '-', '_' and '.'")
        bin_dirs = pg_bin_dirs(env)
        storage = storage_settings(env, problems)
        notify = notify_settings(env, problems, source=conn)
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
            encryption=encryption,
            **numbers,
        )


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
