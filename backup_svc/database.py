"""Short read-only queries against the database being backed up (version, size, tables)."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .config import ConnInfo
from .diagnose import diagnose


@dataclass(frozen=True)
class ServerFacts:
    """What the service needs to know about the server before dumping it."""

    version_num: int
    version: str  # e.g. "15.18"
    database: str
    size_bytes: int
    table_count: int


_FACTS_SQL = """
SELECT current_setting('server_version_num')::int,
       split_part(current_setting('server_version'), ' ', 1),
       current_database(),
       pg_database_size(current_database()),
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%')
"""


def connect(conn: ConnInfo, *, timeout_s: int, purpose: str) -> psycopg.Connection:
    """A read-only autocommit connection labelled `backup_svc-<purpose>`; CannotDump when refused."""
    try:
        return psycopg.connect(
            conn.uri,
            password=conn.password,
            connect_timeout=timeout_s,
            application_name=f"backup_svc-{purpose}",
            options="-c default_transaction_read_only=on -c statement_timeout=30000",
            autocommit=True,
        )
    except psycopg.Error as exc:
        raise diagnose(str(exc), conn.password) from None


def server_facts(conn: ConnInfo, *, timeout_s: int = 10) -> ServerFacts:
    """Version, name, size and table count of the configured database."""
    with connect(conn, timeout_s=timeout_s, purpose="info") as db:
        try:
            row = db.execute(_FACTS_SQL).fetchone()
        except psycopg.Error as exc:
            raise diagnose(str(exc), conn.password) from None
    assert row is not None
    return ServerFacts(*row)
