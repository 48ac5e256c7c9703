"""How a PostgreSQL client program is run: an argument list, a minimal environment (the password
only there, never a service secret), TCP keepalives, and a process that dies with its parent."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# A PostgreSQL version as programs print it: "15.18", "17" (of "17beta1"), "9.6".
VERSION = re.compile(r"(\d+)(?:\.(\d+))?")

# What a pg_dump or psql child sees of the service's environment: the program search path, locale
# and time zone, and the variables libpq itself reads (so the service's own connections, readiness,
# `check` and pg_dump resolve DATABASE_URL the same way: PGPASSWORD, PGPASSFILE, PGSSLMODE, ...).
# Nothing else: ADMIN_TOKEN, ADMIN_PASSWORD, LINK_SECRET, AWS_*, SMTP_URL never reach a child.
PASSED_VARIABLES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "TZ",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
        "LD_LIBRARY_PATH",
        # libpq's environment variables (https://www.postgresql.org/docs/current/libpq-envars.html)
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGREQUIREAUTH",
        "PGCHANNELBINDING",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSYSCONFDIR",
        "PGLOCALEDIR",
        "PGSSLMODE",
        "PGREQUIRESSL",
        "PGSSLNEGOTIATION",
        "PGSSLCOMPRESSION",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLCERTMODE",
        "PGSSLROOTCERT",
        "PGSSLCRL",
        "PGSSLCRLDIR",
        "PGSSLSNI",
        "PGREQUIREPEER",
        "PGSSLMINPROTOCOLVERSION",
        "PGSSLMAXPROTOCOLVERSION",
        "PGGSSENCMODE",
        "PGKRBSRVNAME",
        "PGGSSLIB",
        "PGGSSDELEGATION",
        "PGTARGETSESSIONATTRS",
        "PGLOADBALANCEHOSTS",
        "PGCLIENTENCODING",
        "PGDATESTYLE",
        "PGTZ",
        "PGGEQO",
        "PGMINPROTOCOLVERSION",
        "PGMAXPROTOCOLVERSION",
        "KRB5_CONFIG",
        "KRB5CCNAME",
    }
)

# TCP keepalives on every connection the service makes (its own and pg_dump's), unless DATABASE_URL
# sets them itself: a link that died silently (NAT timeout, a dropped route) is noticed in about a
# minute (30 s idle, then 3 probes 10 s apart; unacknowledged data for 60 s), not after the
# kernel's two hours. `tcp_user_timeout` exists from libpq 12 on.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
TCP_USER_TIMEOUT = {"tcp_user_timeout": "60000"}
TCP_USER_TIMEOUT_SINCE = 12
# The server polls a client's socket while it waits for a lock or runs a query, so a pg_dump or psql
# that was killed (its client left, its worker died) leaves no session behind holding or queueing
# for locks. The setting exists from PostgreSQL 14 on; 1 s keeps an abandoned session under 2 s.
CONNECTION_CHECK_SINCE = 140000
CONNECTION_CHECK_MS = 1000


@dataclass
class ClientCommand:
    """The argument list and environment that run one pg_dump or psql; never a secret in `argv`."""

    argv: list[str]
    env: dict[str, str]


def version_tuple(text: str) -> tuple[int, ...]:
    """(15, 18) from "15.18 (Debian 15.18-0+deb12u1)", (17,) from "17beta1"; () without a version."""
    match = VERSION.match(text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else ()


def child_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The part of `environ` (default: os.environ) a libpq client program may see (PASSED_VARIABLES, LC_*)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in PASSED_VARIABLES or k.startswith("LC_")}


def keepalive_params(uri: str, client_major: int | None = None) -> dict[str, str]:
    """The keepalive parameters `uri` does not set itself (it wins); without tcp_user_timeout for old clients."""
    wanted = dict(KEEPALIVES)
    if client_major is None or client_major >= TCP_USER_TIMEOUT_SINCE:
        wanted.update(TCP_USER_TIMEOUT)
    given = {key for key, _ in parse_qsl(urlsplit(uri).query, keep_blank_values=True)}
    return {key: value for key, value in wanted.items() if key not in given}


def with_keepalives(uri: str, client_major: int | None = None) -> str:
    """`uri` with `keepalive_params` appended to its query string."""
    extra = keepalive_params(uri, client_major)
    if not extra:
        return uri
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
    return urlunsplit(parts._replace(query=query))


# -- dying with the parent ---------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
try:  # resolved once, here: the child between fork and exec must not import or look anything up
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent(parent_pid: int):
    """A preexec_fn: the kernel SIGKILLs the child when its parent goes, however the parent died.

    Linux sends the signal when the *thread* that forked the child ends, not only the process: so a
    client program must be started by the thread that runs it to its end (every caller here does:
    the request thread that streams a dump, the CLI's main thread), never by a short-lived helper.
    """

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the line above took effect
            os._exit(1)

    return preexec


def start_client(command: ClientCommand, **popen_kwargs) -> subprocess.Popen:
    """Popen `command` in a session of its own that dies with this process (SIGKILL, OOM kill, crash)."""
    preexec = _die_with_parent(os.getpid()) if _prctl is not None else None
    return subprocess.Popen(
        command.argv, env=command.env, close_fds=True, start_new_session=True, preexec_fn=preexec, **popen_kwargs
    )
