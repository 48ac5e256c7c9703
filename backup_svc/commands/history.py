"""`history [--check]`: the durable history in a shell — every process's audit entries and outcomes,
newest first, paged back with --before; --check verifies names, hashes and each run's chain."""

from __future__ import annotations

import argparse
import json
import os

from backup_svc.commands.output import fail, refuse, say
from backup_svc.config import ConfigError, Settings

DEFAULT_LIMIT = 50


def _line(entry: dict) -> str:
    """One event as a line: time, process, kind/type, outcome, who/what, error."""
    data = entry["data"]
    what = data.get("name") or data.get("channel") or ""
    who = data.get("actor") or data.get("trigger") or ""
    count = f" ×{data['count']}" if data.get("count", 1) > 1 else ""
    error = f" — {data['error']}" if data.get("error") else ""
    return (
        f"{entry['time']}  {entry['process']:<7} {entry['kind']:<7} {entry['type']:<15} "
        f"{(data.get('outcome') or '-') + count:<12} {who} {data.get('client') or ''} {what}{error}"
    ).rstrip()


def _remote() -> bool:
    from backup_svc.storage.rclone_target import is_rclone_url

    return is_rclone_url(os.environ.get("BACKUP_STORAGE_URL", ""))


def remote_history_from_env(process: str):
    """The durable history in `_history/` beside the backups on BACKUP_STORAGE_URL=rclone:… (ConfigError when
    that URL is malformed)."""
    from backup_svc.history.hooks import remote_history
    from backup_svc.storage.rclone_target import parse_rclone_url

    try:
        location = parse_rclone_url(os.environ["BACKUP_STORAGE_URL"].strip())
    except ValueError as exc:
        raise ConfigError([f"BACKUP_STORAGE_URL {exc}"]) from None
    return remote_history(process, location, os.environ)


def cmd_history(args: argparse.Namespace) -> int:
    """Print the history (newest first) or, with --check, check it for edits and gaps."""
    from backup_svc.history.check import check_history, report_lines
    from backup_svc.history.hooks import history_for
    from backup_svc.history.trail import parse_time
    from backup_svc.storage.client import StorageError

    try:
        if _remote():  # `_history/` beside the backups on the remote
            history = remote_history_from_env("history")
        else:
            settings = Settings.from_env(require_auth=False)
            if settings.storage is None:
                return refuse(
                    [
                        "BACKUP_STORAGE_URL is not set: the history lives in the bucket (without one, only "
                        "in the service's memory and its log)"
                    ]
                )
            history = history_for("history", settings.storage.location, settings.storage.client_env)
    except ConfigError as exc:
        return refuse(exc.problems)
    if args.check:
        try:
            report = check_history(history.bucket)
        except StorageError as exc:
            return fail(f"history check failed: {exc}")
        print("\n".join(report_lines(report)))
        return 0 if report.ok else 1
    try:
        before = parse_time(args.before) if args.before else None
    except ValueError:
        return refuse([f"--before must be an ISO 8601 time such as 2026-12-04T10:00:00Z, got {args.before!r}"])
    events, error = history.page(before, args.limit)
    if error:
        return fail(f"history could not be read: {error}")
    for event in events:
        print(json.dumps(event.body, sort_keys=True) if args.json else _line(event.body))
    say(
        f"{len(events)} event(s) from {history.bucket.url}, newest first"
        + (f"; older ones: --before {events[-1].time}" if len(events) == args.limit else "")
    )
    return 0


def prune_history_now(settings: Settings, dry_run: bool, folder=None) -> int:
    """`prune`'s second half, BACKUP_HISTORY_DAYS: delete the history's events older than that (never a backup)
    in the bucket, or in `folder` (the history on an rclone remote, history/remote.py)."""
    from backup_svc.history.bucket import HistoryBucket
    from backup_svc.history.retention import prune_history
    from backup_svc.storage.client import StorageError, make_client

    bucket = folder
    if bucket is None:
        location = settings.storage.location
        bucket = HistoryBucket(make_client(settings.storage.client_env), location.bucket, location.prefix)
    try:
        report = prune_history(bucket, settings.history_days, dry_run=dry_run)
    except StorageError as exc:
        return fail(f"history retention failed, nothing was deleted: {exc}")
    for line in report.lines():
        say(line)
    return 1 if report.failed else 0


def history_check_lines(settings: Settings, *, remote: bool = False) -> tuple[list[str], bool]:
    """For `check`: where the history lives, whether events can be written there, the newest one
    (`remote`: BACKUP_STORAGE_URL is an rclone remote, settings.storage is None then)."""
    from backup_svc.history.hooks import history_for
    from backup_svc.storage.client import StorageError

    if remote:
        try:
            history = remote_history_from_env("check")
        except ConfigError as exc:
            return [f"history: {problem}" for problem in exc.problems], False
    elif settings.storage is None:
        return [
            "history: in memory only (BACKUP_STORAGE_URL is not set): the dashboard's history and the audit "
            "trail are lost on restart; the log has every entry"
        ], True
    else:
        history = history_for("check", settings.storage.location, settings.storage.client_env)
    where = history.bucket.url
    try:
        history.bucket.probe()
    except StorageError as exc:
        return [
            f"history: cannot write to {where}: {exc} — audit entries and outcomes would stay in memory (and "
            "the log) only, retried until it works"
        ], False
    try:
        newest = history.reader.page(None, 1)
    except StorageError as exc:
        return [f"history: written but not readable at {where}: {exc}"], False
    seen = (
        f"newest event {newest[0].time} ({newest[0].body.get('process')}: {newest[0].type})"
        if newest
        else "no event yet"
    )
    return [
        f"history: ok — {where} takes events; {seen}; kept {settings.history_days} days (BACKUP_HISTORY_DAYS)"
    ], True


def add_history_command(sub) -> None:
    """Register `history` on the CLI's sub-parsers."""
    parser = sub.add_parser("history", help="print the durable history (audit entries and outcomes) from the bucket")
    parser.add_argument("--check", action="store_true", help="check every event's hash and each run's chain")
    parser.add_argument("--before", metavar="TIME", help="only events before this ISO 8601 time (paging back)")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        choices=range(1, 501),
        metavar="N",
        help=f"how many events (1–500, default {DEFAULT_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line, as stored")
    parser.set_defaults(func=cmd_history)
