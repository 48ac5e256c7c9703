"""`upload` to an rclone remote, reported like S3's: mail, webhook and heartbeat hear of every outcome
(notify/stored.py's `reporting`), RESTORE_DRILL_URL drills the new backup from the remote, then
BACKUP_RETENTION. Exit statuses as storage.py's (a retention failure after a stored backup: 1, and said)."""

from __future__ import annotations

import contextlib
import time

from backup_svc.commands.output import fail, say
from backup_svc.config import Settings


def upload(settings: Settings, target, policy) -> int:
    """Store one backup on `target` (storage/rclone_store.py, as `serve` does); notify; drill; apply `policy`."""
    from backup_svc.commands.exits import wait_for_notifications
    from backup_svc.dump.backup import backup_filename
    from backup_svc.history.hooks import flush_before_exit, outcome_sink, remote_history
    from backup_svc.history.retention import pruning_remote_after_backup
    from backup_svc.notify.stored import StoredSetup, reporter_for, reporting
    from backup_svc.storage.rclone_store import take_remote_backup

    setup = StoredSetup(settings.dump, None, settings.notify, settings.encryption)
    reporter = reporter_for(setup)
    # the run, its notifications and drill are events in `_history/` on the remote (as in a bucket)
    history = remote_history("upload", target.location, target.env)
    reporter.history = outcome_sink(history)
    recipients = settings.encryption.recipients
    started, name = time.monotonic(), backup_filename(settings.backup_name, encrypted=bool(recipients))
    retention_error = None
    try:
        with (
            recorded(history, name, settings.conn.password) as amounts,
            reporting(reporter, setup, name, drill_after=False) as outcome,
        ):
            result = take_remote_backup(
                settings.dump,
                target,
                policy,
                name=name,
                recipients=recipients,
                after=pruning_remote_after_backup(settings.history_days),
            )
            stored = result.stored
            outcome.size, outcome.sha256 = stored.size, stored.sha256
            amounts.update(gzip_bytes=stored.size, sha256=stored.sha256)
            for left in result.leftovers:
                say(f"removed {target.location.target(left)}, left by a run that did not finish")
            seconds = time.monotonic() - started
            say(
                f"stored {target.location.target(name)}: {stored.size} bytes in {seconds:.1f} s "
                f"({stored.size / max(seconds, 1e-6) / 1e6:.1f} MB/s); size and sha256 checked"
            )
            print(f"{stored.sha256}  {target.location.url}/{name}", flush=True)
            for kept, line in result.retention_lines:
                say(f"retention: {kept} {line}")
            if result.retention_error:
                retention_error = amounts["retention_error"] = result.retention_error
        if reporter.drills_enabled:
            _drill(reporter, setup, target, name)
    finally:
        wait_for_notifications(reporter)
        flush_before_exit(history, say)
    if retention_error:
        return fail(f"the backup is stored, but retention failed: {retention_error}")
    return 0


@contextlib.contextmanager
def recorded(history, name: str, password: str | None):
    """The run and its audit entry in the history, however it ends (as storage.py's `_recorded_upload`)."""
    from backup_svc.history.event import UPLOAD_TRIGGER
    from backup_svc.history.hooks import record_audit, record_run
    from backup_svc.notify.stored import failure_reason
    from backup_svc.storage.lock import AnotherBackupRunning

    started, amounts = time.time(), {}
    try:
        yield amounts
        error = amounts.pop("retention_error", None)
        ran = {"outcome": "ok, retention failed" if error else "ok", "error": error}
    except BaseException as exc:
        amounts = {}
        ran = {
            "outcome": "skipped" if isinstance(exc, AnotherBackupRunning) else "failed",
            "error": failure_reason(exc, password),
        }
        raise
    finally:
        record_run(history, trigger=UPLOAD_TRIGGER, started=started, finished=time.time(), name=name, **ran)
        record_audit(history, event="stored-backup", started=started, actor=UPLOAD_TRIGGER, name=name, **ran, **amounts)


def _drill(reporter, setup, target, name: str) -> None:
    """RESTORE_DRILL_URL is set: prove the new backup restores from the remote (upload's exit status stays)."""
    from backup_svc.commands.exits import drill_after_upload
    from backup_svc.notify.remote_drill import drill_remote_file

    drill_after_upload(reporter, lambda: drill_remote_file(setup, target, name, say=say))
