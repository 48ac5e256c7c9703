"""The guarded swap: put one database in place of the live one by renaming, under a deadline, with
every step undone when any step fails.

Steps (on a maintenance connection, never inside either database):
  1. no new connections to the incoming database, then to the live one (ALLOW_CONNECTIONS false);
  2. end every other session of both (pg_terminate_backend) and wait until they are gone;
  3. rename live → kept name, incoming → live name;
  4. connections allowed again on the (new) live database: from here the application sees it.
A failure or the deadline (RESTORE_SWAP_TIMEOUT) before step 4 undoes the steps done, in reverse,
on a fresh connection: names and ALLOW_CONNECTIONS are exactly as they were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import psycopg
from psycopg import sql

from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.pg.diagnose import error_lines

from .server import ServerLink

POLL_S = 0.05
UNDO_TIMEOUT_MS = 10_000
_SESSIONS_SQL = """
SELECT pid, usename, coalesce(application_name, ''), datname
  FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()
"""


class SwapFailed(RestoreFailed):
    """The swap did not happen; `restored` says whether every name and setting is back as it was."""

    def __init__(self, message: str, restored: bool):
        super().__init__(message)
        self.restored = restored


@dataclass(frozen=True)
class SwapReport:
    """A swap that happened: the live name now holds `incoming`'s data; the old one is `kept_as`."""

    live: str
    incoming: str
    kept_as: str
    closed_s: float  # how long the live name refused connections
    sessions_ended: int
    warning: str | None = None


def _allow(name: str, allowed: bool) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.SQL("true" if allowed else "false")
    )


def _rename(old: str, new: str) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))


def _end_sessions(db: psycopg.Connection, names: list[str], deadline: float) -> int:
    """Terminate every other session of `names`; wait until none is left; SwapFailed at the deadline."""
    ended: set[int] = set()
    refused: dict[int, str] = {}
    while True:
        sessions = db.execute(_SESSIONS_SQL, (names,)).fetchall()
        if not sessions:
            return len(ended)
        for pid, user, app, datname in sessions:
            if pid in ended or pid in refused:
                continue
            try:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
                ended.add(pid)
            except psycopg.errors.InsufficientPrivilege as exc:
                refused[pid] = (
                    f"session {pid} of role {user!r}"
                    + (f" ({app})" if app else "")
                    + f" in {datname!r}: {error_lines(str(exc))}"
                )
        if time.monotonic() >= deadline:
            left = [
                refused.get(pid) or f"session {pid} of role {user!r}" + (f" ({app})" if app else "")
                for pid, user, app, _ in sessions
            ]
            raise SwapFailed(
                f"could not end {len(left)} session(s) within the swap's time limit: {'; '.join(left[:3])}",
                restored=False,
            )
        time.sleep(POLL_S)


def _timed(db: psycopg.Connection, deadline: float) -> None:
    """Bound the next statement by what is left of the swap's time (lock waits included)."""
    left_ms = max(1, int((deadline - time.monotonic()) * 1000))
    db.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(left_ms)))


def swap_in(
    link: ServerLink, incoming: str, kept_as: str, timeout_s: float, *, say: Callable[[str], None] = lambda _: None
) -> SwapReport:
    """Put database `incoming` in place of the live one, keeping the live one as `kept_as`.

    SwapFailed when it cannot be done within `timeout_s`; then everything is as it was (or the
    message says exactly what could not be put back).
    """
    live = link.database
    done: list[sql.Composed] = []  # the statement undoing each step done, in order
    with link.connect() as db:
        allowed = dict(
            db.execute(
                "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY(%s)", ([live, incoming, kept_as],)
            ).fetchall()
        )
        if kept_as in allowed:
            raise SwapFailed(f"a database called {kept_as!r} exists already; nothing was changed", restored=True)
        for name in (live, incoming):
            if name not in allowed:
                raise SwapFailed(f"there is no database {name!r}; nothing was changed", restored=True)
        deadline = time.monotonic() + timeout_s
        closed_at = None
        try:
            for name in (incoming, live):
                _timed(db, deadline)
                db.execute(_allow(name, False))
                done.append(_allow(name, allowed[name]))
                if name == live:
                    closed_at = time.monotonic()
            say(f"connections to {live!r} refused; ending its sessions")
            ended = _end_sessions(db, [live, incoming], deadline)
            for old, new in ((live, kept_as), (incoming, live)):
                _timed(db, deadline)
                db.execute(_rename(old, new))
                done.append(_rename(new, old))
            _timed(db, deadline)
            db.execute(_allow(live, True))
            closed_s = time.monotonic() - closed_at
        except BaseException as exc:
            reason = _reason(exc, timeout_s)
            problem = _undo(link, done)
            if problem:
                raise SwapFailed(
                    f"the swap failed ({reason}) and could not be fully undone: {problem}", restored=False
                ) from None
            raise SwapFailed(
                f"the swap failed and was undone, {live!r} is as it was: {reason}", restored=True
            ) from None
        warning = None
        try:
            db.execute("SET statement_timeout = 0")
            db.execute(_allow(kept_as, allowed[live]))  # the kept one opens as the live one was
        except psycopg.Error as exc:
            warning = f"{kept_as!r} still refuses connections: {link.scrub(error_lines(str(exc)))}"
    return SwapReport(
        live=live, incoming=incoming, kept_as=kept_as, closed_s=closed_s, sessions_ended=ended, warning=warning
    )


def _reason(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, SwapFailed):
        return str(exc)
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"a step did not finish within RESTORE_SWAP_TIMEOUT ({timeout_s:g} s)"
    if isinstance(exc, psycopg.Error):
        return error_lines(str(exc))
    return str(exc) or type(exc).__name__


def _undo(link: ServerLink, done: list[sql.Composed]) -> str | None:
    """Run the undo statements in reverse on a fresh connection; what could not be undone, or None."""
    if not done:
        return None
    try:
        with link.connect() as db:
            db.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(UNDO_TIMEOUT_MS)))
            for statement in reversed(done):
                try:
                    db.execute(statement)
                except psycopg.Error as exc:
                    return f"{statement.as_string(db)}: {link.scrub(error_lines(str(exc)))}"
    except RestoreFailed as exc:
        return str(exc)
    return None
