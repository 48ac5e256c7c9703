"""The pg_dump invocation: plain SQL with --clean --if-exists, a read-only session, bounded lock and
connect waits, its environment with no service secret. What runs it is `pipeline`."""

from __future__ import annotations

from backup_svc.pg.command import (
    CONNECTION_CHECK_MS,
    CONNECTION_CHECK_SINCE,
    ClientCommand,
    child_environment,
    with_keepalives,
)
from backup_svc.pg.conninfo import ConnInfo

PG_DUMP_FLAGS = ["--format=plain", "--no-owner", "--no-acl", "--clean", "--if-exists", "--verbose"]


def pg_dump_command(
    pg_dump: str,
    conn: ConnInfo,
    *,
    application_name: str,
    lock_timeout_s: int,
    connect_timeout_s: int,
    server_version_num: int | None = None,
    client_major: int | None = None,
) -> ClientCommand:
    """Build the pg_dump invocation: plain SQL, read-only session, bounded lock and connect waits.

    Its environment is `child_environment()` (never a service secret) plus the password of
    DATABASE_URL when it has one; without one, libpq's own PGPASSWORD / PGPASSFILE apply, exactly as
    for the service's own connections.
    """
    argv = [
        pg_dump,
        *PG_DUMP_FLAGS,
        f"--lock-wait-timeout={lock_timeout_s * 1000}",
        f"--dbname={with_keepalives(conn.uri, client_major)}",
    ]
    options = "-c default_transaction_read_only=on"
    if server_version_num is None or server_version_num >= CONNECTION_CHECK_SINCE:
        # see CONNECTION_CHECK_MS: a killed pg_dump leaves no session behind
        options += f" -c client_connection_check_interval={CONNECTION_CHECK_MS}"
    env = child_environment()
    env.update(conn.libpq_env())
    env.update(
        {
            "PGAPPNAME": application_name,
            "PGCONNECT_TIMEOUT": str(connect_timeout_s),
            "PGOPTIONS": options,
        }
    )
    return ClientCommand(argv=argv, env=env)
