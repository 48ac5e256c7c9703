"""`upload` (rclone_upload.py), `list` and `prune` when BACKUP_STORAGE_URL is `rclone:<remote>:<path>`
(storage/rclone_run.py); `check`'s storage lines for it (`check_lines`); the newest backup for `drill`.
`serve` reaches the remote through storage/destination.py."""

from __future__ import annotations

import argparse
import os

from backup_svc.commands.output import fail, say
from backup_svc.commands.exits import EXIT_BUSY, EXIT_SIGTERM, Terminated, sigterm_raises
from backup_svc.config import ConfigError, Settings


def is_rclone() -> bool:
    """BACKUP_STORAGE_URL names an rclone remote (rclone:<remote>:<path>)."""
    from backup_svc.storage.rclone_target import is_rclone_url

    return is_rclone_url(os.environ.get("BACKUP_STORAGE_URL", ""))


def settings_env() -> dict[str, str]:
    """The environment for Settings, without the storage variables this module reads itself (S3's
    settings would want s3://)."""
    env = dict(os.environ)
    for name in ("BACKUP_STORAGE_URL", "BACKUP_RETENTION", "BACKUP_SCHEDULE", "BACKUP_STORAGE_FORMAT"):
        env.pop(name, None)
    return env


def _setup():
    """(settings without storage, target, retention policy); ConfigError / ValueError."""
    from backup_svc.storage.rclone_target import RcloneTarget, parse_rclone_url
    from backup_svc.storage.retention import parse_retention

    url = os.environ["BACKUP_STORAGE_URL"].strip()
    settings = Settings.from_env(settings_env(), require_auth=False)
    if os.environ.get("BACKUP_STORAGE_FORMAT", "").strip().lower() not in ("", "sqlgz"):
        raise ConfigError(
            [
                "BACKUP_STORAGE_FORMAT: only 'sqlgz' is supported on rclone remotes (deduplicated "
                "backups need s3://…): unset it or set it to 'sqlgz'"
            ]
        )
    try:
        target = RcloneTarget(parse_rclone_url(url), os.environ, stall_timeout_s=settings.dump.stall_timeout_s)
        policy = parse_retention(os.environ.get("BACKUP_RETENTION", ""))
    except ValueError as exc:
        raise ConfigError([f"BACKUP_STORAGE_URL / BACKUP_RETENTION: {exc}"]) from None
    return settings, target, policy


def run(command: str, args: argparse.Namespace) -> int:
    """Dispatch `upload` / `list` / `prune` for an rclone remote; exit statuses as storage.py's."""
    from backup_svc.pg.diagnose import CannotDump
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.lock import AnotherBackupRunning

    try:
        settings, target, policy = _setup()
        with sigterm_raises():
            return {"upload": _upload, "list": _list, "prune": _prune}[command](settings, target, policy, args)
    except ConfigError as exc:
        for problem in exc.problems:
            say(problem)
        if command == "upload":
            from backup_svc.notify.heartbeat import ping_settings_failure

            ping_settings_failure(os.environ, exc.problems)  # HEARTBEAT_URL hears of it: <url>/fail
        return 2
    except AnotherBackupRunning as exc:
        say(f"{exc}; nothing to do now (this is not a failure)")
        return EXIT_BUSY
    except CannotDump as exc:
        return fail(f"{command} failed: {exc.message}; nothing was stored or deleted")
    except KeyboardInterrupt:
        say(f"{command} interrupted; the temporary object was removed, nothing was stored")
        return 130
    except Terminated:
        say(f"{command} stopped by SIGTERM; the temporary object was removed, nothing was stored")
        return EXIT_SIGTERM
    except Exception as exc:  # DumpBroken, StorageError, …: one line, the temporary object already removed
        kind = "" if isinstance(exc, StorageError) else f"{type(exc).__name__}: "
        return fail(f"{command} failed: {kind}{exc}; nothing was stored")


def _lock(settings: Settings, target):
    from backup_svc.storage.rclone_store import lock_for

    return lock_for(settings.dump, target)


def _owner(settings: Settings):
    from backup_svc.storage.take import owner_lookup

    return owner_lookup(settings.dump).get()


def _upload(settings: Settings, target, policy, args) -> int:
    from backup_svc.commands.rclone_upload import upload

    return upload(settings, target, policy)


def _list(settings: Settings, target, policy, args) -> int:
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.rclone_run import survey

    backups, ignored = survey(target, BackupNames(settings.backup_name), _owner(settings))
    say(f"{len(backups)} stored backup{'s' if len(backups) != 1 else ''} in {target.location.url}, newest first")
    for name, reason in ignored:
        say(f"not listed: {name} ({reason})")
    for backup in backups:
        print(f"{backup.name}  {backup.size:>14}  {backup.time:%Y-%m-%dT%H:%M:%SZ}  {backup.sha256 or '-'}")
    return 0


def _prune(settings: Settings, target, policy, args) -> int:
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.rclone_run import prune

    from backup_svc.commands.history import prune_history_now, remote_history_from_env

    if policy is None:
        say("BACKUP_RETENTION is not set: every backup is kept (e.g. BACKUP_RETENTION=last=7,daily=14)")
    else:
        with _lock(settings, target):
            lines = prune(target, BackupNames(settings.backup_name), _owner(settings), policy, dry_run=args.dry_run)
        for name, line in lines:
            print(f"{name}  {line}")
    return prune_history_now(settings, args.dry_run, folder=remote_history_from_env("prune").bucket)


def check_lines(settings: Settings) -> tuple[list[str], bool]:
    """For `check`: the remote's backups and each thing the service does there (rclone_probe.py), the
    schedule and retention; ok is False when this process could not do its job with this remote."""
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.rclone_probe import describe_remote, probe_rclone
    from backup_svc.storage.rclone_run import survey
    from backup_svc.storage.rclone_target import RcloneTarget, parse_rclone_url
    from backup_svc.storage.retention import parse_retention

    url = os.environ["BACKUP_STORAGE_URL"].strip()
    try:
        location = parse_rclone_url(url)
        policy = parse_retention(os.environ.get("BACKUP_RETENTION", ""))
    except ValueError as exc:
        return [f"storage: BACKUP_STORAGE_URL / BACKUP_RETENTION: {exc}"], False
    # A person waits for `check`: short bounds (a stalled remote fails in about half a minute).
    target = RcloneTarget(location, os.environ, connect_timeout_s=5, stall_timeout_s=10, retries=1)
    report = probe_rclone(target, describe_remote(location.remote, os.environ))
    lines, ok = report.lines(), report.ok
    if report.reachable:
        try:
            backups, _ = survey(target, BackupNames(settings.backup_name), _owner(settings))
            newest = f", newest {backups[0].name}" if backups else ""
            lines[0] += f": {len(backups)} stored backup{'s' if len(backups) != 1 else ''}{newest}"
        except StorageError as exc:
            lines.append(f"storage: listing this service's backups failed: {exc}")
            ok = False
    schedule = os.environ.get("BACKUP_SCHEDULE", "").strip()
    if schedule:
        lines.append(f"schedule: {schedule} (UTC): `serve` stores a backup on the remote at those times")
    else:
        lines.append("schedule: none (`upload` from a cron service, or POST /api/v1/stored, stores one)")
    lines.append(
        f"retention: {policy}" if policy is not None else "retention: keep everything (BACKUP_RETENTION is not set)"
    )
    return lines, ok


def newest_on_remote(settings: Settings, url: str | None):
    """(target, name) for `drill`: the file `url` names (rclone:<remote>:<path>/<name>), or this service's
    newest backup on BACKUP_STORAGE_URL (name None when there is none yet); ValueError for a bad URL."""
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.rclone_reader import split_file_url
    from backup_svc.storage.rclone_run import survey
    from backup_svc.storage.rclone_target import RcloneTarget, parse_rclone_url

    if url:
        return split_file_url(url, os.environ)
    target = RcloneTarget(
        parse_rclone_url(os.environ["BACKUP_STORAGE_URL"].strip()),
        os.environ,
        stall_timeout_s=settings.dump.stall_timeout_s,
    )
    backups, _ = survey(target, BackupNames(settings.backup_name), _owner(settings))
    return target, backups[0].name if backups else None
