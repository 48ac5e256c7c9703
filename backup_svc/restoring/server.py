"""The server side of a restore: a maintenance connection (never to the live database), what the
service's role may do, the databases it made or kept, and dropping one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg import sql

from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.notify.drill import with_database
from backup_svc.pg.command import keepalive_params
from backup_svc.pg.diagnose import error_lines
from backup_svc.pg.scrub import scrub

from .names import KeptName, kept_name, parse_kept

APPLICATION_NAME = "backup_svc-restore"
# A database the service created carries this at the start of its comment (COMMENT ON DATABASE).
MARK = "backup_svc:"
MAINTENANCE_DATABASES = ("postgres", "template1")

_PRIVILEGES_SQL = """
SELECT current_user, r.rolsuper, r.rolcreatedb,
       d.datname IS NOT NULL, coalesce(pg_has_role(current_user, d.datdba, 'MEMBER'), false),
       pg_get_userbyid(d.datdba)
  FROM pg_roles r LEFT JOIN pg_database d ON d.datname = %s
 WHERE r.rolname = current_user
"""
_DATABASES_SQL = """
SELECT d.datname, pg_database_size(d.oid), d.datallowconn, shobj_description(d.oid, 'pg_database'),
       pg_get_userbyid(d.datdba)
  FROM pg_database d WHERE NOT d.datistemplate ORDER BY d.datname
"""


@dataclass(frozen=True)
class ServerLink:
    """How to reach the server of the live database: its ConnInfo (any object with uri, password, dbname)."""

    live: object  # config.ConnInfo of DATABASE_URL (duck-typed: lower rooms do not import config)
    timeout_s: int = 10

    @property
    def database(self) -> str:
        return self.live.dbname

    def other(self, dbname: str):
        """The same server and role, another database."""
        return with_database(self.live, dbname)

    @property
    def maintenance(self) -> str:
        """The database to connect to for CREATE / ALTER / DROP DATABASE: `postgres`, else `template1`."""
        return getattr(self, "_maintenance", MAINTENANCE_DATABASES[0])

    def connect(self) -> psycopg.Connection:
        """An autocommit connection to a maintenance database (never the live one)."""
        names = [self.maintenance] + [n for n in MAINTENANCE_DATABASES if n != self.maintenance]
        last = None
        for name in names:
            try:
                db = psycopg.connect(
                    self.live.uri,
                    dbname=name,
                    password=self.live.password,
                    connect_timeout=self.timeout_s,
                    application_name=APPLICATION_NAME,
                    autocommit=True,
                    **keepalive_params(self.live.uri),
                )
                object.__setattr__(self, "_maintenance", name)  # remembered: the next connection goes there first
                return db
            except psycopg.Error as exc:
                last = exc
        raise RestoreFailed(
            f"cannot connect to the database server ({' or '.join(names)}): {self.scrub(error_lines(str(last)))}"
        )

    def scrub(self, text: str) -> str:
        return scrub(text, self.live.password)


@dataclass(frozen=True)
class Privileges:
    """What the service's role may do on this server, and what it lacks for each kind of restore."""

    role: str
    superuser: bool
    createdb: bool
    owns_live: bool
    live_owner: str

    def missing_for_new(self) -> list[str]:
        return [] if self.superuser or self.createdb else ["CREATEDB"]

    def missing_for_swap(self, database: str) -> list[str]:
        """Renaming needs the CREATEDB privilege and ownership of the database (a superuser has both)."""
        if self.superuser:
            return []
        missing = self.missing_for_new()
        if not self.owns_live:
            missing.append(f"ownership of database {database!r} (owned by {self.live_owner!r})")
        return missing

    def refusal(self, database: str, *, swap: bool) -> str | None:
        """One line naming the missing privileges, or None."""
        missing = self.missing_for_swap(database) if swap else self.missing_for_new()
        if not missing:
            return None
        what = f"replace database {database!r}" if swap else "create a database"
        tail = " Restoring into a new database still works." if swap and not self.missing_for_new() else ""
        return (
            f"the role {self.role!r} cannot {what}: it lacks {' and '.join(missing)} and is not a superuser. "
            f"Grant it (ALTER ROLE {self.role} CREATEDB; ALTER DATABASE … OWNER TO {self.role}) or run this "
            f"as the database's owner.{tail}"
        )

    def as_json(self, database: str) -> dict:
        return {
            "role": self.role,
            "superuser": self.superuser,
            "createdb": self.createdb,
            "owns_database": self.owns_live,
            "can_restore_new": not self.missing_for_new(),
            "can_replace": not self.missing_for_swap(database),
            "missing_for_replace": self.missing_for_swap(database),
        }


def privileges(db: psycopg.Connection, database: str) -> Privileges:
    """The service role's privileges, asked on a maintenance connection."""
    role, superuser, createdb, exists, owns, owner = db.execute(_PRIVILEGES_SQL, (database,)).fetchone()
    return Privileges(
        role=role, superuser=superuser, createdb=createdb, owns_live=bool(exists and owns), live_owner=owner or "?"
    )


@dataclass(frozen=True)
class KeptDatabase:
    """A database this service made or kept, as the dashboard lists it."""

    name: str
    kind: str  # "restored", "before_restore" or "restored" for a typed name the service made
    time: datetime | None
    size: int
    allow_connections: bool
    note: str

    def as_json(self) -> dict:
        when = self.time.isoformat().replace("+00:00", "Z") if self.time else None
        return {
            "name": self.name,
            "kind": self.kind,
            "time": when,
            "size": self.size,
            "allow_connections": self.allow_connections,
            "note": self.note,
        }


def kept_databases(db: psycopg.Connection, database: str) -> list[KeptDatabase]:
    """The live database's `_restored_` / `_before_restore_` databases and any other the service made, newest first."""
    found = []
    for name, size, allow, comment, _owner in db.execute(_DATABASES_SQL):
        if name == database:
            continue
        parsed: KeptName | None = parse_kept(database, name)
        marked = (comment or "").startswith(MARK)
        if parsed is None and not marked:
            continue
        found.append(
            KeptDatabase(
                name=name,
                kind=parsed.kind if parsed else "restored",
                time=parsed.time if parsed else None,
                size=size,
                allow_connections=allow,
                note=(comment or "")[len(MARK) :].strip() if marked else "",
            )
        )
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda k: k.time or epoch, reverse=True)


def find_kept(db: psycopg.Connection, database: str, name: str) -> KeptDatabase | None:
    """The kept database called `name`, or None when it is not one of the service's."""
    return next((k for k in kept_databases(db, database) if k.name == name), None)


def mark(db: psycopg.Connection, name: str, note: str) -> None:
    """Say on the database itself why it exists (its comment), so any admin tool shows it."""
    db.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(f"{MARK} {note}")))


def drop_database(db: psycopg.Connection, name: str, *, force: bool) -> None:
    """DROP DATABASE `name` (with FORCE: ending its sessions, for a half-built one nobody else knows)."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    if force and db.info.server_version >= 130000:
        statement += sql.SQL(" WITH (FORCE)")
    db.execute(statement)


def session_count(db: psycopg.Connection, name: str) -> int:
    """Sessions connected to database `name` now."""
    return db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
    ).fetchone()[0]


def free_kept_name(db: psycopg.Connection, database: str, kind: str, when: datetime) -> str:
    """`kept_name` at `when`, or the next second's when a database has that name (an undo right after a swap)."""
    for offset in range(60):
        name = kept_name(database, kind, when + timedelta(seconds=offset))
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            return name
    raise RestoreFailed(f"no free name like {kept_name(database, kind, when)!r}; drop some kept databases first")
