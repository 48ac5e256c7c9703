"""The object-storage commands `upload`, `list` and `prune` (`verify`/`restore` of s3:// URLs: from_bucket.py).

Exit statuses of `upload`: 0 the backup is stored and read back; 1 it failed (nothing was stored)
or retention after it failed (the backup is stored: the message says so); 2 configuration;
75 skipped, another stored backup is running (not a failure); 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from backup_svc.config import ConfigError, Settings

EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: nothing wrong, try again later
EXIT_SIGTERM = 128 + signal.SIGTERM
# The longest a command waits for its notifications: a channel's whole retry budget, and some.
NOTIFY_WAIT_S = 45


class Terminated(BaseException):
    """SIGTERM arrived (a redeploy, `docker stop`, Railway ending a cron run)."""


def _say(line: str) -> None:
    print(f"backup_svc: {line}", file=sys.stderr, flush=True)


def _log_to_stderr() -> None:
    """Retries and failed aborts are logged (as warnings, errors) by the storage modules; show them on stderr."""
    logger = logging.getLogger("backup_svc")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("backup_svc: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _settings_with_storage() -> Settings | None:
    """The settings, with storage configured; None after saying each problem (the command exits 2)."""
    try:
        settings = Settings.from_env(require_auth=False)
        if settings.storage is None:
            raise ConfigError(["BACKUP_STORAGE_URL is not set: nowhere to store backups (e.g. s3://my-bucket/backups)"])
    except ConfigError as exc:
        for problem in exc.problems:
            _say(problem)
        return None
    return settings


def cmd_upload(args: argparse.Namespace) -> int:
    """Take one backup into object storage now, then apply BACKUP_RETENTION."""
    from backup_svc.dump.backup import backup_filename
    from backup_svc.dump.pipeline import DumpBroken
    from backup_svc.notify.outcome import reporter_for, reporting
    from backup_svc.pg.diagnose import CannotDump
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.lock import AnotherBackupRunning
    from backup_svc.storage.run import take_stored_backup

    settings = _settings_with_storage()
    if settings is None:
        return 2
    _log_to_stderr()

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the abort short
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    aborted = "the upload was aborted and nothing was stored"
    # Notifications of the outcome (NOTIFY_*, SMTP_URL, HEARTBEAT_URL) go out in the background and
    # are waited for, within their time bound, before the command exits.
    reporter = reporter_for(settings)
    name = backup_filename(settings.backup_name, encrypted=settings.encryption.encrypts)
    try:
        with reporting(reporter, settings, name, drill_after=False) as outcome:
            result = take_stored_backup(settings, settings.storage, name=name)
            outcome.stored(result.stored)
    except AnotherBackupRunning as exc:
        _say(f"{exc}; nothing to do now (this is not a failure)")
        return EXIT_BUSY
    except CannotDump as exc:
        _say(f"upload failed: {exc.message}; {aborted}")
        return 1
    except Terminated:
        _say(f"upload stopped by SIGTERM; {aborted}")
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        _say(f"upload interrupted; {aborted}")
        return 130
    except (DumpBroken, StorageError) as exc:
        _say(f"upload failed: {exc}; {aborted}")
        return 1
    except Exception as exc:  # anything unforeseen: still one line, and still aborted
        _say(f"upload failed: {type(exc).__name__}: {exc}; {aborted}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        _wait_for_notifications(reporter)
    stored = result.stored
    _say(f"stored s3://{stored.bucket}/{stored.key}: {stored.size} bytes in {result.seconds:.1f} s "
         f"(PostgreSQL {stored.metadata.get('server-version', '?')}, "
         f"pg_dump {stored.metadata.get('pg-dump-version', '?')}); size and sha256 read back and matched")
    print(f"{stored.sha256}  s3://{stored.bucket}/{stored.key}", flush=True)
    if result.retention is not None:
        for line in result.retention.lines():
            _say(f"retention: {line}")
    if reporter.drills_enabled:
        _drill_after_upload(reporter, settings, stored)
    if result.retention_error:
        _say(f"the backup is stored, but retention failed: {result.retention_error}")
        return 1
    return 0


def _wait_for_notifications(reporter) -> None:
    if not reporter.notifier.flush(timeout_s=NOTIFY_WAIT_S):
        _say(f"notifications still unsent after {NOTIFY_WAIT_S} s were given up")


def _drill_after_upload(reporter, settings: Settings, stored) -> None:
    """RESTORE_DRILL_URL is set: prove the new object restores (its outcome does not change upload's exit status)."""
    from backup_svc.notify.outcome import drill_stored_object

    report = reporter.drill_now(lambda: drill_stored_object(settings, stored.bucket, stored.key, say=_say))
    if report is not None and report.outcome == "ok":
        _say(f"restore drill ok in {report.seconds:.1f} s: {report.tables} tables, {report.rows} rows match "
             f"({report.counts_from})")
    elif report is not None:
        _say(f"restore drill FAILED after {report.seconds:.1f} s: {report.error}")
    _wait_for_notifications(reporter)


def cmd_list(args: argparse.Namespace) -> int:
    """List this service's stored backups, newest first: name, size, time (UTC), sha256, encryption."""
    from backup_svc.crypto.labels import describe
    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.listing import list_backups
    from backup_svc.storage.location import BackupNames

    settings = _settings_with_storage()
    if settings is None:
        return 2
    storage = settings.storage
    try:
        backups = list_backups(make_client(storage.client_env), storage.location, BackupNames(settings.backup_name),
                               with_sha256=True)
    except StorageError as exc:
        _say(f"list failed: {exc}")
        return 1
    _say(f"{len(backups)} stored backup{'s' if len(backups) != 1 else ''} in {storage.location.url}, newest first")
    for backup in backups:
        print(f"{backup.name}  {backup.size:>14}  {backup.time:%Y-%m-%dT%H:%M:%SZ}  {backup.sha256 or '-'}  "
              f"{describe(backup.name, backup.metadata)}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Apply BACKUP_RETENTION now (with --dry-run: only say what would be deleted and why)."""
    from backup_svc.pg.diagnose import CannotDump
    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.lock import AnotherBackupRunning, StoredBackupLock
    from backup_svc.storage.prune import prune
    from backup_svc.storage.run import destination_of

    settings = _settings_with_storage()
    if settings is None:
        return 2
    storage = settings.storage
    if storage.retention is None:
        _say("BACKUP_RETENTION is not set: every backup is kept, nothing to prune "
             "(e.g. BACKUP_RETENTION=last=7,daily=14,weekly=8,monthly=12)")
        return 2
    _log_to_stderr()
    try:
        # Under the upload lock: a prune never races an upload of the same backups.
        with StoredBackupLock(settings.conn, destination_of(settings, storage), timeout_s=settings.connect_timeout_s):
            report = prune(make_client(storage.client_env), storage.location, BackupNames(settings.backup_name),
                           storage.retention, dry_run=args.dry_run)
    except AnotherBackupRunning as exc:
        _say(f"{exc}; prune again when it is done")
        return EXIT_BUSY
    except CannotDump as exc:
        _say(f"prune needs the database for its lock: {exc.message}")
        return 1
    except StorageError as exc:
        _say(f"prune failed, nothing was deleted: {exc}")
        return 1
    for line in report.lines():
        print(line)
    kept, removed = len(report.kept), len(report.removed)
    verb = "would delete" if args.dry_run else "deleted"
    _say(f"{storage.retention}: keep {kept}, {verb} {removed if args.dry_run else len(report.deleted)}"
         + (f", {len(report.failed)} failed" if report.failed else ""))
    return 1 if report.failed else 0


def add_storage_commands(sub) -> None:
    """Register `upload`, `list` and `prune` on the CLI's sub-parsers."""
    upload = sub.add_parser("upload", help="store one backup in object storage now (BACKUP_STORAGE_URL), "
                                           "then apply BACKUP_RETENTION")
    upload.set_defaults(func=cmd_upload)
    listing = sub.add_parser("list", help="list the stored backups, newest first")
    listing.set_defaults(func=cmd_list)
    prune = sub.add_parser("prune", help="delete the stored backups BACKUP_RETENTION does not keep")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted, and why")
    prune.set_defaults(func=cmd_prune)



def storage_check_lines(settings: Settings) -> tuple[list[str], bool]:
    """For `check`: where stored backups go, whether that place can be listed, each permission the service
    needs there (probe.py), the schedule and retention."""
    from datetime import datetime, timezone

    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.listing import list_backups
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.probe import probe_storage

    storage = settings.storage
    if storage is None:
        return ["storage: off (BACKUP_STORAGE_URL is not set)"], True
    lines, ok = [], True
    endpoint = storage.client_env.get("AWS_ENDPOINT_URL", "AWS")
    client = make_client(storage.client_env)
    try:
        backups = list_backups(client, storage.location, BackupNames(settings.backup_name))
        newest = f", newest {backups[0].name}" if backups else ""
        lines.append(f"storage: ok — {storage.location.url} at {endpoint}: {len(backups)} stored "
                     f"backup{'s' if len(backups) != 1 else ''}{newest}")
    except StorageError as exc:
        lines.append(f"storage: {storage.location.url} at {endpoint}: {exc}")
        ok = False
    else:
        # each permission the service needs, tried on the prefix without leaving anything behind
        permissions = probe_storage(client, storage.location, endpoint)
        lines += permissions.lines()[1:]
        ok = ok and permissions.ok
    if storage.schedule is not None:
        upcoming = storage.schedule.next_after(datetime.now(timezone.utc))
        lines.append(f"schedule: {storage.schedule} — {storage.schedule.describe()}; next {upcoming:%Y-%m-%d %H:%M} UTC")
    else:
        lines.append("schedule: none (BACKUP_SCHEDULE is not set: `upload` runs only when started)")
    lines.append(f"retention: {storage.retention}" if storage.retention is not None
                 else "retention: keep everything (BACKUP_RETENTION is not set)")
    return lines, ok
