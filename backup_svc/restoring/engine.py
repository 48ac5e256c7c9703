"""A restore from start to end: into a new database (checked, all or nothing, rows compared), and
for `replace` the guarded swap after it; undo and drop of the databases kept.

Every path that fails or is cancelled before the swap drops the database it created; the live
database is touched only by the swap, which undoes itself when it fails.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

import psycopg

from backup_svc.files.psqlfeed import RestoreFailed, psql_command, stream_into_psql
from backup_svc.files.restore import choose_psql, create_database, inspect_target
from backup_svc.files.scan import DumpScanner
from backup_svc.notify.drill import compare, restored_counts
from backup_svc.files.parallel.restore import restore_in_parallel
from backup_svc.pg.binaries import find_binaries
from backup_svc.pg.diagnose import error_lines

from .names import BEFORE_RESTORE, BadName
from .progress import RestoreProgress
from .server import ServerLink, drop_database, find_kept, free_kept_name, mark, privileges
from .source import Source, check_source
from .swap import SwapFailed, SwapReport, swap_in

log = logging.getLogger("backup_svc.restore")
Say = Callable[[str], None]


class NotKept(RestoreFailed):
    """The name is not one of the databases this service made or kept."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def check_privileges(link: ServerLink, *, swap: bool) -> None:
    """RestoreFailed naming what the service's role lacks for this kind of restore."""
    with link.connect() as db:
        refusal = privileges(db, link.database).refusal(link.database, swap=swap)
    if refusal:
        raise RestoreFailed(refusal)


def restore(
    source: Source,
    link: ServerLink,
    progress: RestoreProgress,
    *,
    bin_dirs: list[str],
    swap_timeout_s: float,
    require_sha256: bool = True,
    say: Say = lambda _: None,
    jobs: int = 1,
) -> None:
    """Restore `source` into `progress.target` (a new database, on `jobs` connections); for mode
    `replace`, swap it in.

    Raises RestoreFailed / BadBackup / Cancelled; the progress says how far it got. Nothing is left
    behind on failure: the new database is dropped, a failed swap is undone.
    """
    replace = progress.mode == "replace"
    progress.enter("privileges")
    check_privileges(link, swap=replace)
    progress.enter("checking")
    checked = check_source(source, progress, require_sha256=require_sha256)
    progress.bytes_total = int(source.metadata.get("sql-bytes") or checked.sql_bytes)
    progress.tables_total = checked.recorded_tables if checked.recorded_tables is not None else len(checked.expected)
    progress.counts_from = checked.counts_from
    say(
        f"checked {source.label}: intact and complete, {checked.sql_bytes} bytes of SQL"
        + (", sha256 as recorded" if source.stored_sha256 else "")
    )
    progress.enter("creating")
    target = link.other(progress.target)
    say(create_database(target, link.timeout_s, checked.encoding, maintenance=link.maintenance))
    try:
        with link.connect() as db:
            mark(
                db,
                progress.target,
                f"restored from {source.name} by {progress.actor} at {_utc_now():%Y-%m-%d %H:%M:%S} UTC",
            )
        _apply(source, target, progress, checked, bin_dirs, say, jobs)
        if replace:
            progress.enter("swapping")
            with link.connect() as db:
                kept_as = free_kept_name(db, link.database, BEFORE_RESTORE, _utc_now())
            report = swap_in(link, progress.target, kept_as, swap_timeout_s, say=say)
            _after_swap(link, report, progress, f"the live database before {source.name} was restored in its place")
    except BaseException as exc:
        if isinstance(exc, SwapFailed) and not exc.restored:
            raise  # names are not as they were: leave every database for the admin to see
        _drop_quietly(link, progress.target, say)
        raise


def _apply(
    source: Source, target, progress: RestoreProgress, checked, bin_dirs: list[str], say: Say, jobs: int = 1
) -> None:
    """Stream the backup into the new database (psql in one transaction, or on `jobs` connections: the
    database is new, a failure drops it), then compare row counts."""
    facts = inspect_target(target, 10)
    psql, warning = choose_psql(facts, checked.pg_dump_version, find_binaries("psql", bin_dirs))
    if warning:
        say(f"warning: {warning}")
        progress.warning = warning
    progress.enter("restoring")

    def watch(scanner: DumpScanner) -> None:
        progress.bytes_applied = scanner.sql_bytes
        progress.tables_done = scanner.copy_statements
        progress.check_cancel()

    if jobs > 1:
        say(
            f"restoring into {progress.target!r} on {jobs} connections, with {psql.path} ({psql.version}) for "
            f"the schema ..."
        )
        restore_in_parallel(
            source.label,
            target,
            psql.path,
            facts.version_num,
            jobs,
            opener=source.reading_opener(),
            say=say,
            watch=watch,
        )
    else:
        say(f"restoring into {progress.target!r} with {psql.path} ({psql.version}) ...")
        stream_into_psql(
            source.label,
            psql_command(psql.path, target, facts.version_num),
            secrets=(target.password,),
            opener=source.reading_opener(),
            watch=watch,
        )
    progress.enter("comparing")
    actual = restored_counts(target, list(checked.expected), 10)
    progress.rows = sum(v for v in actual.values() if v is not None)
    problems = compare(checked.expected, actual)
    if checked.recorded_rows is not None and sum(checked.expected.values()) != checked.recorded_rows:
        problems.append(
            f"the per-table counts add up to {sum(checked.expected.values())} rows, the recorded "
            f"total is {checked.recorded_rows}"
        )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise RestoreFailed(f"row counts differ after the restore: {'; '.join(problems[:3])}{more}")
    say(f"row counts match ({checked.counts_from}): {len(checked.expected)} tables, {progress.rows} rows")


def _after_swap(link: ServerLink, report: SwapReport, progress: RestoreProgress | None, why: str) -> None:
    if progress is not None:
        progress.kept_as, progress.closed_s = report.kept_as, report.closed_s
        progress.warning = report.warning or progress.warning
    try:
        with link.connect() as db:
            mark(db, report.kept_as, f"{why} at {_utc_now():%Y-%m-%d %H:%M:%S} UTC")
    except (psycopg.Error, RestoreFailed) as exc:  # a missing comment is no reason to fail a done swap
        log.warning("restore: could not comment on %s: %s", report.kept_as, error_lines(str(exc)))


def _drop_quietly(link: ServerLink, name: str, say: Say) -> None:
    try:
        with link.connect() as db:
            drop_database(db, name, force=True)
        say(f"dropped the half-built database {name!r}")
    except (psycopg.Error, RestoreFailed) as exc:
        message = f"could not drop the half-built database {name!r}: {link.scrub(error_lines(str(exc)))}"
        log.error("restore: %s", message)
        say(f"warning: {message}")


def undo(link: ServerLink, name: str, *, swap_timeout_s: float, say: Say = lambda _: None) -> SwapReport:
    """Swap the kept database `name` back in; the live one is kept in turn as `<db>_before_restore_<now>`."""
    with link.connect() as db:
        if find_kept(db, link.database, name) is None:
            raise NotKept(f"{name!r} is not a database this service made or kept (GET /api/v1/databases lists them)")
        refusal = privileges(db, link.database).refusal(link.database, swap=True)
        kept_as = free_kept_name(db, link.database, BEFORE_RESTORE, _utc_now())
    if refusal:
        raise RestoreFailed(refusal)
    report = swap_in(link, name, kept_as, swap_timeout_s, say=say)
    _after_swap(link, report, None, f"the live database before {name} was swapped back in")
    return report


def drop(link: ServerLink, name: str, confirm: str | None) -> None:
    """DROP one kept database after its name was typed (`confirm`); never the live one, never another."""
    if confirm != name:
        raise BadName(f"type the database's name ({name}) to confirm dropping it; nothing was dropped")
    with link.connect() as db:
        if name == link.database or find_kept(db, link.database, name) is None:
            raise NotKept(f"{name!r} is not a database this service made or kept; nothing was dropped")
        try:
            drop_database(db, name, force=False)
        except psycopg.errors.ObjectInUse:
            raise RestoreFailed(
                f"{name!r} is in use (someone is connected to it); close those sessions and "
                f"try again — nothing was dropped"
            ) from None
        except psycopg.Error as exc:
            raise RestoreFailed(f"cannot drop {name!r}: {link.scrub(error_lines(str(exc)))}") from None
