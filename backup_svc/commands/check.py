"""`check`: can this process do its job? Configuration, alerts, storage, database and pg_dump, judged
for what the process is for — `serve` (the web service: admin secrets needed) or `upload` (a cron
service that stores one backup and exits: it serves nothing, so it needs no admin secret, but it
needs somewhere to store).

Exit status 0 means "this process can do its job"; warnings (no alert channel, draining) do not
change it.
"""

from __future__ import annotations

import argparse
from typing import Mapping

from backup_svc.config import ConfigError, Settings

SERVE, UPLOAD, AUTO = "serve", "upload", "auto"
PURPOSES = (SERVE, UPLOAD, AUTO)
ADMIN_SECRETS = ("ADMIN_TOKEN", "ADMIN_PASSWORD")


def detect_purpose(env: Mapping[str, str]) -> tuple[str, str]:
    """What a process with `env` is for, and why it looks so: admin secrets mean it serves; storage
    without admin secrets is an uploader (a cron service); anything else is taken for a server."""
    if any((env.get(name) or "").strip() for name in ADMIN_SECRETS):
        return SERVE, "ADMIN_TOKEN or ADMIN_PASSWORD is set"
    if (env.get("BACKUP_STORAGE_URL") or "").strip():
        return UPLOAD, "BACKUP_STORAGE_URL is set and no admin secret: a cron service that runs `upload`"
    return SERVE, "no admin secret and no BACKUP_STORAGE_URL"


def alert_lines(settings: Settings, purpose: str, *, remote: bool = False) -> list[str]:
    """`alerts: …` lines: a warning when stored backups are on and nobody would hear of a failure, and
    the heartbeat recommended where it is missing (the only alert that fires when nothing runs at all).
    `remote`: the backups go to an rclone remote (settings.storage is None then; `upload` stores them)."""
    storage, notify = settings.storage, settings.notify
    if storage is None and not remote:
        return []
    runs_backups = purpose == UPLOAD or (storage is not None and storage.schedule is not None)
    if notify is None or not notify.any_channel:
        return [
            "alerts: warning — stored backups are on, but no alert channel is set: a failed or missing "
            "backup tells nobody. Set HEARTBEAT_URL (a dead man's switch such as healthchecks.io: the only "
            "alert that also fires when no backup runs at all), and SMTP_URL + NOTIFY_EMAIL_TO/FROM or "
            "NOTIFY_WEBHOOK_URL for the reason (docs/notifications.md)"
        ]
    lines = []
    if runs_backups and not notify.heartbeat_url:
        lines.append(
            "alerts: note — no HEARTBEAT_URL: a failed backup is reported, but if backups stop running "
            "(the process is down, out of memory, the cron service deleted) nothing here can say so; "
            "a heartbeat monitor can (docs/notifications.md)"
        )
    if purpose == SERVE and storage is not None and storage.watched_schedule is not None:
        which = "BACKUP_SCHEDULE" if storage.schedule is not None else "BACKUP_EXPECTED_SCHEDULE"
        lines.append(
            f"alerts: the staleness alarm watches {which}: no successful stored backup for 1.5 "
            "intervals, or a failed scheduled run, sends one alert"
        )
    return lines


def load_settings(
    purpose: str, env: Mapping[str, str] | None = None, *, storage_elsewhere: bool = False
) -> tuple[Settings | None, list[str]]:
    """The settings and the configuration problems that keep a process of `purpose` from its job
    (`storage_elsewhere`: the storage is an rclone remote, judged by rclone_storage.check_lines)."""
    try:
        settings = Settings.from_env(env, require_auth=purpose == SERVE)
        problems: list[str] = []
    except ConfigError as exc:
        problems = list(exc.problems)
        try:  # say the rest (draining, storage, database) even when only the login is missing
            settings = Settings.from_env(env, require_auth=False)
        except ConfigError:
            return None, problems
    if purpose == UPLOAD and settings.storage is None and not storage_elsewhere:
        problems.append(
            "BACKUP_STORAGE_URL is not set: `upload` has nowhere to store backups (e.g. s3://my-bucket/backups)"
        )
    return settings, problems


def cmd_check(args: argparse.Namespace) -> int:
    """Check configuration, alerts, storage, connectivity and pg_dump for this process's job; say what is wrong."""
    import os

    from backup_svc.commands import rclone_storage
    from backup_svc.commands.storage import storage_check_lines
    from backup_svc.crypto.settings import check_lines as encryption_check_lines
    from backup_svc.pg.binaries import find_binaries
    from backup_svc.pg.facts import server_facts
    from backup_svc.pg.readiness import dump_readiness

    purpose, why = (args.purpose, "--for") if args.purpose != AUTO else detect_purpose(os.environ)
    print(f"checking as: {purpose} ({why}; `check --for serve|upload` to choose)")
    rclone = rclone_storage.is_rclone()  # BACKUP_STORAGE_URL=rclone:…: its own storage lines
    settings, problems = load_settings(
        purpose, rclone_storage.settings_env() if rclone else None, storage_elsewhere=rclone
    )
    for problem in problems:
        print(f"configuration: {problem}")
    if settings is None:
        return 1
    if not problems:
        print(
            "configuration: ok" + ("" if purpose == SERVE else " (no admin secret needed: this process serves nothing)")
        )
    ok = not problems
    if purpose == SERVE:
        print(f"draining: {settings.draining.describe(settings.graceful_timeout_s)}")
        for warning in settings.draining.warnings(settings.graceful_timeout_s):
            print(f"draining: warning — {warning}")
    for line in settings.notify.describe() if settings.notify else []:
        print(f"notifications: {line}")
    for line in alert_lines(settings, purpose, remote=rclone):
        print(line)
    storage_lines, storage_ok = rclone_storage.check_lines(settings) if rclone else storage_check_lines(settings)
    print("\n".join(storage_lines))
    print("\n".join(encryption_check_lines(settings.encryption)))
    ok = ok and storage_ok
    from backup_svc.commands.history import history_check_lines

    history_lines, history_ok = history_check_lines(settings, remote=rclone)
    print("\n".join(history_lines))
    ok = ok and history_ok
    installed = find_binaries("pg_dump", settings.pg_bin_dirs)
    print("pg_dump installed: " + (", ".join(f"{b.version} ({b.path})" for b in installed) or "none"))
    ready = dump_readiness(lambda: server_facts(settings.conn, timeout_s=settings.connect_timeout_s), installed)
    if ready.facts is not None:
        facts = ready.facts
        print(
            f"database: ok — {facts.database} on PostgreSQL {facts.version}, "
            f"{facts.size_bytes} bytes, {facts.table_count} tables"
        )
    if ready.pg_dump is not None:
        print(f"pg_dump: ok — {ready.pg_dump.version} at {ready.pg_dump.path}")
        if ready.caveat:
            print(f"pg_dump: warning — {ready.caveat}")
    if ready.problem is not None:
        print(f"database: {ready.problem.message}")
        ok = False
    print(
        f"result: {'ok' if ok else 'NOT ready'} — this process {'can' if ok else 'cannot'} "
        f"{'serve backups' if purpose == SERVE else 'store backups'}"
    )
    return 0 if ok else 1


def add_check_command(sub) -> None:
    """The `check` subcommand and its --for option."""
    check = sub.add_parser(
        "check", help="check that this process can do its job: configuration, alerts, storage, database, pg_dump"
    )
    check.add_argument(
        "--for",
        dest="purpose",
        choices=PURPOSES,
        default=AUTO,
        help="what this process is for: serve (the web service; needs ADMIN_TOKEN or "
        "ADMIN_PASSWORD) or upload (a cron service running `upload`; needs "
        "BACKUP_STORAGE_URL, no admin secret). Default auto: serve when an admin secret "
        "is set, upload when only BACKUP_STORAGE_URL is",
    )
    check.set_defaults(func=cmd_check)
