"""`python -m backup_svc notify-test` and `python -m backup_svc drill`: the command-line side of notify."""

from __future__ import annotations

import argparse
import os

from backup_svc.commands.output import fail, note, refuse, say
from backup_svc.config import ConfigError
from backup_svc.notify.common import TEST, Event
from backup_svc.notify.delivery import Notifier
from backup_svc.notify.settings import NotifySettings
from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.conninfo import ConnInfo, parse_database_url
from backup_svc.timefmt import utc_now


def _source() -> tuple[ConnInfo | None, list[str]]:
    """The backed-up database, when DATABASE_URL is set (the drill must never restore into it)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return None, []
    try:
        return parse_database_url(url), []
    except ValueError as exc:
        return None, [f"DATABASE_URL {exc}"]


def _database_name(source: ConnInfo | None) -> str:
    return os.environ.get("BACKUP_NAME", "").strip() or (source.dbname if source else "backup_svc")


def load(source: ConnInfo | None) -> NotifySettings:
    """NotifySettings from the environment; ConfigError as for the service itself."""
    return NotifySettings.from_env(source=source)


def _source_and_settings() -> tuple[ConnInfo | None, NotifySettings | None, list[str]]:
    """The backed-up database (when DATABASE_URL is set) and the notification settings, or the problems."""
    source, problems = _source()
    if problems:
        return None, None, problems
    try:
        return source, load(source), []
    except ConfigError as exc:
        return None, None, exc.problems


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send one test notification through each configured channel and say how each fared."""
    source, settings, problems = _source_and_settings()
    if problems:
        return refuse(problems)
    if not settings.any_channel:
        return refuse(
            [
                "no notification channel is configured: set SMTP_URL (with NOTIFY_EMAIL_TO), "
                "NOTIFY_WEBHOOK_URL or HEARTBEAT_URL"
            ]
        )
    when = utc_now()
    event = Event(kind=TEST, outcome="ok", database=_database_name(source), started=when, finished=when)
    deliveries = Notifier(settings).send(event, everything=True)
    for d in deliveries:
        how = (
            f"sent ({d.attempts} attempt{'s' if d.attempts != 1 else ''}, {d.seconds:.1f} s)"
            if d.ok
            else f"FAILED after {d.attempts} attempt{'s' if d.attempts != 1 else ''}: {d.error}"
        )
        print(f"{d.channel:<9} {d.target}: {how}")
    return 0 if all(d.ok for d in deliveries) else 1


def cmd_drill(args: argparse.Namespace) -> int:
    """Prove a backup restores: restore it into a fresh scratch database on RESTORE_DRILL_URL's
    server, compare row counts, drop it. Without an argument: the newest stored backup."""
    from backup_svc.commands.rclone_storage import is_rclone

    source_arg = args.source
    if (source_arg or "").startswith("rclone:") or (not source_arg and is_rclone()):
        return _drill_remote(source_arg)
    if source_arg and not source_arg.startswith("s3://"):
        return _drill_file(source_arg)
    from backup_svc.config import Settings

    try:
        settings = Settings.from_env(require_auth=False)
    except ConfigError as exc:
        return refuse(exc.problems)
    if settings.notify is None or settings.notify.drill is None:
        return refuse([NO_DRILL_URL])
    from backup_svc.notify.stored import StoredSetup

    report = _drill_stored(
        StoredSetup(settings.dump, settings.storage, settings.notify, settings.encryption), source_arg
    )
    if isinstance(report, int):
        return report
    # a drill of a stored backup is an outcome in the bucket's history too (the dashboard's "last proven")
    from backup_svc.history.hooks import command_history, flush_before_exit, outcome_sink

    history = command_history("drill", settings.storage)
    record = outcome_sink(history)
    record("drill", report.as_dict(), report.finished)
    try:
        return _finish(
            report,
            settings.notify,
            settings.conn.dbname,
            on_problem=lambda d: record("notify-problem", d.as_dict(), d.at),
        )
    finally:
        flush_before_exit(history, say)


NO_DRILL_URL = (
    "RESTORE_DRILL_URL is not set: name a scratch server the drill may create and drop databases "
    "on (e.g. postgresql://user:password@scratch-host:5432/postgres)"
)


def _drill_stored(settings, url: str | None):
    """The drill of `url` (s3://bucket/key), or of the newest stored backup; an exit status when there is none."""
    from backup_svc.notify.stored import drill_stored_object, failure_reason, newest_stored
    from backup_svc.storage.client import make_client
    from backup_svc.storage.location import parse_object_url

    if url:
        try:
            bucket, key = parse_object_url(url)
        except ValueError as exc:
            return refuse([f"{url}: {exc}"])
        client = None
        if settings.storage is None:
            from backup_svc.commands.from_bucket import storage_client_for_reading

            client = storage_client_for_reading()
        return drill_stored_object(settings, bucket, key, client=client, say=note)
    if settings.storage is None:
        return refuse(
            [
                "nothing to drill: pass a backup file or s3://bucket/key, or set BACKUP_STORAGE_URL "
                "to drill the newest stored backup"
            ]
        )
    client = make_client(settings.storage.client_env)
    try:
        newest = newest_stored(settings, client)
    except Exception as exc:
        return fail(f"drill failed: cannot list {settings.storage.location.url}: {failure_reason(exc)}")
    if newest is None:
        return fail(f"drill failed: no stored backup in {settings.storage.location.url} yet")
    note(f"drilling the newest stored backup, {newest.name}")
    return drill_stored_object(settings, settings.storage.location.bucket, newest.key, client=client, say=note)


def _drill_remote(url: str | None) -> int:
    """`drill rclone:<remote>:<path>/<name>`, or the newest backup on BACKUP_STORAGE_URL=rclone:…"""
    from backup_svc.commands.rclone_storage import newest_on_remote, settings_env
    from backup_svc.config import Settings
    from backup_svc.notify.stored import StoredSetup, failure_reason
    from backup_svc.notify.remote_drill import drill_remote_file

    try:
        settings = Settings.from_env(settings_env(), require_auth=False)
    except ConfigError as exc:
        return refuse(exc.problems)
    if settings.notify is None or settings.notify.drill is None:
        return refuse([NO_DRILL_URL])
    try:
        target, name = newest_on_remote(settings, url)
    except ValueError as exc:
        return refuse([f"{url or os.environ.get('BACKUP_STORAGE_URL')}: {exc}"])
    except Exception as exc:
        return fail(f"drill failed: cannot list the remote: {failure_reason(exc)}")
    if name is None:
        return fail(f"drill failed: no stored backup in {target.location.url} yet")
    if url is None:
        note(f"drilling the newest stored backup, {name}")
    report = drill_remote_file(
        StoredSetup(settings.dump, None, settings.notify, settings.encryption), target, name, say=note
    )
    return _finish(report, settings.notify, settings.conn.dbname)


def _drill_file(path: str) -> int:
    from backup_svc.notify.drill import run_drill
    from backup_svc.notify.drillbounds import drill_timeout_s

    source, settings, problems = _source_and_settings()
    if problems:
        return refuse(problems)
    if settings.drill is None:
        return refuse([NO_DRILL_URL])
    if not os.path.isfile(path):
        return refuse([f"{path}: no such file"])
    from backup_svc.crypto.settings import reading_opener

    try:
        opener = reading_opener(path, None, os.environ)  # an age file: decrypted with BACKUP_AGE_IDENTITY
    except ValueError as exc:
        return refuse([str(exc)])
    report = run_drill(
        path,
        os.path.basename(path),
        settings.drill,
        source=source,
        opener=opener,
        bin_dirs=pg_bin_dirs(os.environ),
        say=note,
        deadline_s=drill_timeout_s(settings.drill_timeout_s, os.path.getsize(path)),
    )
    return _finish(report, settings, _database_name(source))


def _finish(report, settings: NotifySettings, database: str, on_problem=None) -> int:
    """Send the drill's notification (per NOTIFY_ON), print its outcome, return the exit status."""
    notifier = Notifier(settings)
    notifier.on_problem = on_problem
    for d in notifier.send(report.event(database)):
        if not d.ok:
            note(f"warning: the {d.channel} notification was not delivered: {d.error}")
    if report.outcome != "ok":
        return fail(f"drill failed after {report.seconds:.1f} s: {report.error}")
    print(
        f"drill ok: {report.name} restored into a scratch database on PostgreSQL {report.server_version} "
        f"in {report.seconds:.1f} s; {report.tables} tables, {report.rows} rows, counts match "
        f"({report.counts_from}); "
        + (
            f"scratch database {report.scratch!r} left: {report.scratch_left}"
            if report.scratch_left
            else "scratch database dropped"
        )
    )
    return 0


def add_commands(sub) -> None:
    """Register `notify-test` and `drill` on the CLI's subparsers."""
    test = sub.add_parser("notify-test", help="send one test notification through each configured channel")
    test.set_defaults(func=cmd_notify_test)
    drill = sub.add_parser(
        "drill",
        help="prove a backup restores: restore it into a scratch database "
        "on RESTORE_DRILL_URL's server, compare row counts, drop it",
    )
    drill.add_argument(
        "source",
        nargs="?",
        metavar="FILE|s3://bucket/key|rclone:remote:path/name",
        help="the backup to drill: a local .sql.gz or a stored object or remote file "
        "(default: the newest stored backup)",
    )
    drill.set_defaults(func=cmd_drill)
