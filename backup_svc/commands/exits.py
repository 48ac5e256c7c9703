"""What the storage commands (`upload` to a bucket or an rclone remote) share about ending: exit statuses,
SIGTERM as an exception, the drill after an upload, and the wait for notifications before the process exits."""
from __future__ import annotations

import signal

from backup_svc.commands.output import say

EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: nothing wrong, try again later
EXIT_SIGTERM = 128 + signal.SIGTERM
# The longest a command waits for its notifications: a channel's whole retry budget, and some.
NOTIFY_WAIT_S = 45


class Terminated(BaseException):
    """SIGTERM arrived (a redeploy, `docker stop`, Railway ending a cron run)."""


def wait_for_notifications(reporter) -> None:
    """Give the reporter's notifications their time bound to go out before the command exits."""
    if not reporter.notifier.flush(timeout_s=NOTIFY_WAIT_S):
        say(f"notifications still unsent after {NOTIFY_WAIT_S} s were given up")


def drill_after_upload(reporter, job) -> None:
    """RESTORE_DRILL_URL is set: run the drill `job` of the new backup, say its outcome (it does not change
    upload's exit status) and wait for its notification."""
    report = reporter.drill_now(job)
    if report is not None and report.outcome == "ok":
        say(f"restore drill ok in {report.seconds:.1f} s: {report.tables} tables, {report.rows} rows match "
            f"({report.counts_from})")
    elif report is not None:
        say(f"restore drill FAILED after {report.seconds:.1f} s: {report.error}")
    wait_for_notifications(reporter)
