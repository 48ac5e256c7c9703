"""`restore SOURCE --replace [--yes]`, `restore --list-kept`, `--undo NAME`, `--drop NAME`: the
dashboard's restore from a shell (inside the Railway container with `railway ssh`, or from a laptop
over the public URL), against DATABASE_URL's server. The CLI hands in plain values."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from typing import Callable

from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.files.reader import BadBackup

from .engine import NotKept, drop, restore, undo
from .names import RESTORED, BadName
from .progress import Cancelled, RestoreProgress
from .server import ServerLink, free_kept_name, kept_databases
from .source import Source, stored_source

Ask = Callable[[str], str]


def say(line: str) -> None:
    print(f"backup_svc: {line}", file=sys.stderr, flush=True)


def terminal_ask(prompt: str) -> str:
    """The typed answer on a terminal; '' when there is none (a script must pass --yes)."""
    if not sys.stdin.isatty():
        return ""
    try:
        return input(prompt)
    except EOFError:
        return ""


def confirmed(expected: str, what: str, yes: bool, ask: Ask) -> bool:
    """True with --yes, or when the person typed `expected`; says why not otherwise."""
    if yes:
        return True
    typed = ask(f"{what}\nType the database's name ({expected}) to go on: ").strip()
    if typed == expected:
        return True
    say(
        "not confirmed ("
        + ("no terminal: pass --yes in scripts" if not typed else "the name typed differs")
        + "); nothing was changed"
    )
    return False


def list_kept(link: ServerLink) -> int:
    """Print the databases this service made or kept, newest first."""
    with link.connect() as db:
        kept = kept_databases(db, link.database)
    if not kept:
        print(f"no restored or kept databases beside {link.database!r}")
    for k in kept:
        when = k.time.strftime("%Y-%m-%d %H:%M:%S UTC") if k.time else "-"
        print(f"{k.name}\t{k.kind}\t{when}\t{k.size} bytes" + (f"\t{k.note}" if k.note else ""))
    return 0


def _source(label: str) -> Source:
    from backup_svc.crypto.settings import identities_from_env

    problems: list[str] = []
    identities = identities_from_env(os.environ, problems)  # BACKUP_AGE_IDENTITY: age files decrypt with it
    if problems:
        raise BadBackup("; ".join(problems))
    if label.startswith("s3://"):
        from backup_svc.storage.location import parse_object_url
        from backup_svc.storage.settings import reading_client

        bucket, key = parse_object_url(label)
        source = stored_source(
            reading_client(os.environ),
            bucket,
            key,
            key.rsplit("/", 1)[-1],
            identities,
            dedup_secret=os.environ.get("BACKUP_DEDUP_KEY", ""),
        )
        if source.stored_sha256 is None:
            say(f"warning: {label} has no stored sha256 to compare (it was not stored by backup_svc's upload)")
        return source
    return Source(label=label, name=os.path.basename(label), size=os.path.getsize(label), identities=identities)


def replace(
    link: ServerLink, label: str, *, yes: bool, bin_dirs: list[str], swap_timeout_s: int, ask: Ask = terminal_ask
) -> int:
    """Restore `label` into a new database, check it, swap it in for the live one (kept as before_restore)."""
    what = (
        f"This replaces database {link.database!r} with the backup {label}. The current data is kept as "
        f"{link.database}_before_restore_<time> (undo: restore --undo NAME); the application is refused "
        f"connections for the swap (at most {swap_timeout_s} s)."
    )
    if not confirmed(link.database, what, yes, ask):
        return 1
    source = _source(label)
    with link.connect() as db:
        target = free_kept_name(db, link.database, RESTORED, datetime.now(timezone.utc))
    progress = RestoreProgress(
        id="shell",
        backup=source.name,
        mode="replace",
        database=link.database,
        target=target,
        actor=os.environ.get("USER") or "shell",
    )
    restore(source, link, progress, bin_dirs=bin_dirs, swap_timeout_s=swap_timeout_s, require_sha256=False, say=say)
    print(
        f"replaced {link.database!r} with {label}: {progress.tables_total} tables, {progress.rows} rows "
        f"(row counts as recorded: {progress.counts_from}); connections were refused for "
        f"{progress.closed_s:.2f} s; the replaced data is kept as {progress.kept_as!r}"
    )
    if progress.warning:
        say(f"warning: {progress.warning}")
    return 0


def run(
    action: str,
    link: ServerLink,
    *,
    name: str | None = None,
    source: str | None = None,
    yes: bool = False,
    bin_dirs: list[str] | None = None,
    swap_timeout_s: int = 30,
    ask: Ask = terminal_ask,
) -> int:
    """One of the shell's restore actions ("replace", "list", "undo", "drop"); its exit status."""
    try:
        if action == "list":
            return list_kept(link)
        if action == "replace":
            return replace(link, source, yes=yes, bin_dirs=bin_dirs or [], swap_timeout_s=swap_timeout_s, ask=ask)
        if action == "undo":
            if not confirmed(
                link.database,
                f"This swaps {name!r} in for {link.database!r}; the current data is "
                f"kept as {link.database}_before_restore_<time>.",
                yes,
                ask,
            ):
                return 1
            report = undo(link, name, swap_timeout_s=swap_timeout_s, say=say)
            print(
                f"swapped {name!r} back in as {link.database!r} (connections refused for {report.closed_s:.2f} s); "
                f"the data it replaced is kept as {report.kept_as!r}"
            )
            return 0
        if not confirmed(name, f"This drops database {name!r} for good.", yes, ask):
            return 1
        drop(link, name, name)
        print(f"dropped {name!r}")
        return 0
    except (BadBackup, BadName) as exc:
        say(f"refused: {exc}; nothing was changed")
    except NotKept as exc:
        say(f"refused: {exc}")
    except RestoreFailed as exc:
        say(f"failed: {exc}")
    except (KeyboardInterrupt, Cancelled):
        say("interrupted: the new database was dropped; a swap under way was undone")
        return 130
    except Exception as exc:  # storage failing mid-read and the like: one line, no trace
        say(f"failed: {link.scrub(getattr(exc, 'message', None) or str(exc) or type(exc).__name__)}")
    return 1
