"""The object-storage commands `upload`, `list` and `prune` (`verify`/`restore` of s3:// URLs: from_bucket.py).

Exit statuses of `upload`: 0 the backup is stored and read back; 1 it failed (nothing was stored)
or retention after it failed (the backup is stored: the message says so); 2 configuration;
75 skipped, another stored backup is running (not a failure); 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backup_svc.commands.output import fail, say
from backup_svc.config import ConfigError, Settings

from backup_svc.commands.exits import EXIT_BUSY, EXIT_SIGTERM, NOTIFY_WAIT_S, Terminated, sigterm_raises  # noqa: F401 (re-exported)
from backup_svc.commands.exits import wait_for_notifications as _wait_for_notifications


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
            say(problem)
        from backup_svc.notify.heartbeat import ping_settings_failure

        ping_settings_failure(os.environ, exc.problems)  # HEARTBEAT_URL hears of it: <url>/fail
        return None
    return settings


def cmd_upload(args: argparse.Namespace) -> int:
    """Take one backup into object storage now, then apply BACKUP_RETENTION; its run goes into the history."""
    from backup_svc.commands import rclone_storage

    if rclone_storage.is_rclone():  # BACKUP_STORAGE_URL=rclone:… (rclone_storage.py)
        return rclone_storage.run("upload", args)
    from backup_svc.history.hooks import command_history, flush_before_exit
    from backup_svc.pg.binaries import probe_soon

    settings = _settings_with_storage()
    if settings is None:
        return 2
    probe_soon("pg_dump", settings.dump.pg_bin_dirs)  # while the modules below load
    _log_to_stderr()
    # The run, its notifications and drill are also events in the bucket's history, where the web
    # service's dashboard and staleness alarm read them (a cron service's runs included).
    history = command_history("upload", settings.storage)
    try:
        return _upload(settings, history)
    finally:
        flush_before_exit(history, say)


def _upload(settings: Settings, history) -> int:
    from backup_svc.storage.take import stored_backup_name
    from backup_svc.dump.pipeline import DumpBroken
    from backup_svc.history.hooks import outcome_sink
    from backup_svc.notify.stored import StoredSetup, reporter_for
    from backup_svc.pg.diagnose import CannotDump
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.lock import AnotherBackupRunning

    aborted = "the upload was aborted and nothing was stored"
    # Notifications of the outcome (NOTIFY_*, SMTP_URL, HEARTBEAT_URL) go out in the background and
    # are waited for, within their time bound, before the command exits.
    setup = StoredSetup(settings.dump, settings.storage, settings.notify, settings.encryption)
    reporter = reporter_for(setup)
    reporter.history = outcome_sink(history)
    name = stored_backup_name(settings.backup_name, settings.storage, encrypted=settings.encryption.encrypts)
    try:
        with sigterm_raises():  # the upload is aborted as on Ctrl-C
            result = _recorded_upload(settings, setup, reporter, history, name)
    except AnotherBackupRunning as exc:
        say(f"{exc}; nothing to do now (this is not a failure)")
        return EXIT_BUSY
    except CannotDump as exc:
        return fail(f"upload failed: {exc.message}; {_left(exc, aborted)}")
    except Terminated as exc:
        say(f"upload stopped by SIGTERM; {_left(exc, aborted)}")
        return EXIT_SIGTERM
    except KeyboardInterrupt as exc:
        say(f"upload interrupted; {_left(exc, aborted)}")
        return 130
    except (DumpBroken, StorageError) as exc:
        return fail(f"upload failed: {exc}; {_left(exc, aborted)}")
    except Exception as exc:  # anything unforeseen: still one line, and still aborted
        return fail(f"upload failed: {type(exc).__name__}: {exc}; {_left(exc, aborted)}")
    finally:
        _wait_for_notifications(reporter)
    stored = result.stored
    if "dedup-chunks" in stored.metadata:  # a dedup backup: its manifest, and what this run added to the chunks
        m = stored.metadata
        say(
            f"dedup: {m['dedup-chunks']} chunks ({m.get('sql-bytes', '?')} bytes of SQL, {m['dedup-stored-bytes']} "
            f"stored), {m['dedup-new-chunks']} of them new: {m['dedup-new-bytes']} bytes uploaded"
        )
    say(
        f"stored s3://{stored.bucket}/{stored.key}: {stored.size} bytes in {result.seconds:.1f} s "
        f"(PostgreSQL {stored.metadata.get('server-version', '?')}, "
        f"pg_dump {stored.metadata.get('pg-dump-version', '?')}); size and sha256 read back and matched"
    )
    print(f"{stored.sha256}  s3://{stored.bucket}/{stored.key}", flush=True)
    if result.shrink is not None:
        s = result.shrink
        say(
            f"warning: this backup shrank: {s.measure} {s.value} is {s.drop_percent:.1f} % below the median "
            f"{s.median:.0f} of the {s.compared} before it; retention keeps {s.held} until the alarm is "
            f"acknowledged on the dashboard (the backup itself is good: exit status 0)"
        )
    if result.retention is not None:
        for line in result.retention.lines():
            say(f"retention: {line}")
    if reporter.drills_enabled:
        _drill_after_upload(reporter, setup, stored)
    if result.retention_error:
        return fail(f"the backup is stored, but retention failed: {result.retention_error}")
    return 0


def _left(exc: BaseException, aborted: str) -> str:
    """ "the upload was aborted and nothing was stored", or exactly what a failed clean-up left (upload.py)."""
    left = getattr(exc, "left_behind", None) or getattr(exc.__cause__, "left_behind", None)
    return f"the clean-up failed, left in the bucket: {'; '.join(left)}" if left else aborted


def _recorded_upload(settings: Settings, setup, reporter, history, name: str):
    """take_stored_backup, reported (notifications) and recorded in the history as a run and an audit entry."""
    import time

    from backup_svc.history.event import UPLOAD_TRIGGER
    from backup_svc.history.hooks import record_audit, record_run
    from backup_svc.history.retention import pruning_after_backup
    from backup_svc.notify.stored import failure_reason, reporting
    from backup_svc.storage.lock import AnotherBackupRunning
    from backup_svc.storage.take import take_stored_backup

    started, amounts = time.time(), {}
    try:
        with reporting(reporter, setup, name, drill_after=False) as outcome:
            result = take_stored_backup(
                settings.dump,
                settings.storage,
                name=name,
                recipients=settings.encryption.recipients,
                after=pruning_after_backup(settings.storage),
            )
            outcome.stored(result.stored, result.shrink, rows=result.rows)
        ran = {"outcome": "ok, retention failed" if result.retention_error else "ok", "error": result.retention_error}
        amounts = {
            "gzip_bytes": result.stored.size,
            "sql_bytes": result.sql_bytes,
            "rows": result.rows,
            "sha256": result.stored.sha256,
        }
    except BaseException as exc:
        ran = {
            "outcome": "skipped" if isinstance(exc, AnotherBackupRunning) else "failed",
            "error": failure_reason(exc, settings.conn.password),
        }
        raise
    finally:
        record_run(history, trigger=UPLOAD_TRIGGER, started=started, finished=time.time(), name=name, **ran)
        record_audit(history, event="stored-backup", started=started, actor=UPLOAD_TRIGGER, name=name, **ran, **amounts)
    return result


def _drill_after_upload(reporter, setup, stored) -> None:
    """RESTORE_DRILL_URL is set: prove the new object restores (its outcome does not change upload's exit status)."""
    from backup_svc.notify.stored import drill_stored_object

    from backup_svc.commands.exits import drill_after_upload

    drill_after_upload(reporter, lambda: drill_stored_object(setup, stored.bucket, stored.key, say=say))


def cmd_list(args: argparse.Namespace) -> int:
    """List this service's stored backups, newest first: name, size, time (UTC), sha256, encryption."""
    from backup_svc.commands import rclone_storage

    if rclone_storage.is_rclone():  # BACKUP_STORAGE_URL=rclone:… (rclone_storage.py)
        return rclone_storage.run("list", args)
    from backup_svc.crypto.labels import describe
    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.listing import survey_backups
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.prune import UNRECORDED_NOTE
    from backup_svc.storage.take import owner_lookup

    settings = _settings_with_storage()
    if settings is None:
        return 2
    storage = settings.storage
    try:
        survey = survey_backups(
            make_client(storage.client_env),
            storage.location,
            BackupNames(settings.backup_name),
            owner_lookup(settings.dump).get(),
        )
    except StorageError as exc:
        return fail(f"list failed: {exc}")
    backups = survey.backups
    say(
        f"{len(backups)} stored backup{'s' if len(backups) != 1 else ''} in {storage.location.url}, newest first"
        + (
            f"; {len(survey.unrecorded)} more stored by an older version, marked ({UNRECORDED_NOTE})"
            if survey.unrecorded
            else ""
        )
    )
    for backup, reason in survey.ignored:
        say(f"not listed: {backup.name} ({reason})")
    unrecorded = {b.key for b in survey.unrecorded}
    for backup in sorted(backups + survey.unrecorded, key=lambda b: b.time, reverse=True):
        print(
            f"{backup.name}  {backup.size:>14}  {backup.time:%Y-%m-%dT%H:%M:%SZ}  {backup.sha256 or '-'}  "
            f"{describe(backup.name, backup.metadata)}" + ("  no-owner-record" if backup.key in unrecorded else "")
        )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Apply BACKUP_RETENTION and BACKUP_HISTORY_DAYS now (with --dry-run: only say what would be deleted and why)."""
    from backup_svc.commands import rclone_storage

    if rclone_storage.is_rclone():  # BACKUP_STORAGE_URL=rclone:… (rclone_storage.py)
        return rclone_storage.run("prune", args)
    settings = _settings_with_storage()
    if settings is None:
        return 2
    _log_to_stderr()
    if settings.storage.retention is None:
        say(
            "BACKUP_RETENTION is not set: every backup is kept "
            "(e.g. BACKUP_RETENTION=last=7,daily=14,weekly=8,monthly=12)"
        )
        status = 0
    else:
        status = _prune_backups(settings, args.dry_run)
    from backup_svc.commands.history import prune_history_now

    return max(status, prune_history_now(settings, args.dry_run))


def _prune_backups(settings: Settings, dry_run: bool) -> int:
    from backup_svc.pg.diagnose import CannotDump
    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.lock import AnotherBackupRunning, StoredBackupLock
    from backup_svc.storage.prune import prune
    from backup_svc.storage.take import destination_of, owner_lookup

    storage = settings.storage
    try:
        # Under the upload lock: a prune never races an upload of the same backups.
        with StoredBackupLock(
            settings.conn, destination_of(settings.dump, storage), timeout_s=settings.connect_timeout_s
        ):
            report = prune(
                make_client(storage.client_env),
                storage.location,
                BackupNames(settings.backup_name),
                owner_lookup(settings.dump).get(),
                storage.retention,
                dry_run=dry_run,
            )
    except AnotherBackupRunning as exc:
        say(f"{exc}; prune again when it is done")
        return EXIT_BUSY
    except CannotDump as exc:
        return fail(f"prune needs the database for its lock: {exc.message}")
    except StorageError as exc:
        return fail(f"prune failed, nothing was deleted: {exc}")
    for line in report.lines():
        print(line)
    kept, removed = len(report.kept), len(report.removed)
    verb = "would delete" if dry_run else "deleted"
    say(
        f"{storage.retention}: keep {kept}, {verb} {removed if dry_run else len(report.deleted)}"
        + (f", {len(report.failed)} failed" if report.failed else "")
    )
    return 1 if report.failed else 0


def add_storage_commands(sub) -> None:
    """Register `upload`, `list` and `prune` on the CLI's sub-parsers."""
    upload = sub.add_parser(
        "upload", help="store one backup in object storage now (BACKUP_STORAGE_URL), then apply BACKUP_RETENTION"
    )
    upload.set_defaults(func=cmd_upload)
    listing = sub.add_parser("list", help="list the stored backups, newest first")
    listing.set_defaults(func=cmd_list)
    prune = sub.add_parser(
        "prune",
        help="delete the stored backups BACKUP_RETENTION does not keep, and history "
        "events older than BACKUP_HISTORY_DAYS",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted, and why")
    prune.set_defaults(func=cmd_prune)


def storage_check_lines(settings: Settings) -> tuple[list[str], bool]:
    """For `check`: where stored backups go, whether that place can be listed, each permission the service
    needs there (probe.py), the schedule and retention."""
    from datetime import datetime, timezone

    from backup_svc.storage.client import StorageError, make_client
    from backup_svc.storage.listing import survey_backups
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.probe import probe_storage
    from backup_svc.storage.take import owner_lookup

    storage = settings.storage
    if storage is None:
        return ["storage: off (BACKUP_STORAGE_URL is not set)"], True
    lines, ok = [], True
    endpoint = storage.client_env.get("AWS_ENDPOINT_URL", "AWS")
    client = make_client(storage.client_env)
    try:
        owner = owner_lookup(settings.dump).get()
        survey = survey_backups(client, storage.location, BackupNames(settings.backup_name), owner)
        backups = survey.backups
        newest = f", newest {backups[0].name}" if backups else ""
        lines.append(
            f"storage: ok — {storage.location.url} at {endpoint}: {len(backups)} stored "
            f"backup{'s' if len(backups) != 1 else ''}{newest}"
        )
        lines += _others_warning(survey, owner)
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
        lines.append(
            f"schedule: {storage.schedule} — {storage.schedule.describe()}; next {upcoming:%Y-%m-%d %H:%M} UTC"
        )
    elif storage.expected_schedule is not None:
        expected = storage.expected_schedule
        upcoming = expected.next_after(datetime.now(timezone.utc))
        lines.append(
            f"schedule: {expected} — {expected.describe()}, taken by another process "
            f"(BACKUP_EXPECTED_SCHEDULE; `serve` only watches for them); next {upcoming:%Y-%m-%d %H:%M} UTC"
        )
    else:
        lines.append("schedule: none (BACKUP_SCHEDULE is not set: `upload` runs only when started)")
    lines.append(
        f"retention: {storage.retention}"
        if storage.retention is not None
        else "retention: keep everything (BACKUP_RETENTION is not set)"
    )
    if storage.storage_format == "dedup":
        lines.append(
            f"format: dedup — chunks under {storage.location.url}_chunks/{settings.backup_name}/ plus a "
            f"manifest per backup (….sql.dedup); only backup-svc reads them back, with BACKUP_DEDUP_KEY"
        )
    else:
        lines.append("format: sqlgz — one .sql.gz object per backup (BACKUP_STORAGE_FORMAT)")
    return lines, ok


def _others_warning(survey, owner) -> list[str]:
    """`check`'s warning when objects named like this service's backups belong to another service."""
    others = [(b, reason) for b, reason in survey.ignored if owner.is_other_service(b.metadata)]
    if not others:
        return []
    return [
        f"storage: warning — {len(others)} object{'s' if len(others) != 1 else ''} under the prefix "
        f"{'are' if len(others) != 1 else 'is'} named like this service's backups but belong to another "
        f"service ({others[0][1]}, e.g. {others[0][0].name}); this service never lists, keeps or deletes "
        f"them, but give each service its own prefix or BACKUP_NAME"
    ]
