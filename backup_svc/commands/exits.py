"""What the commands share about ending: exit statuses, SIGTERM as an exception (and how a restore into
--target-url that Ctrl-C or SIGTERM stopped says so), and, for the storage commands (`upload` to a bucket or
an rclone remote), the drill after an upload and the wait for notifications before the process exits."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from backup_svc.commands.output import say

EXIT_BUSY = 75  # sysexits' EX_TEMPFAIL: nothing wrong, try again later
EXIT_SIGTERM = 128 + signal.SIGTERM
# The longest a command waits for its notifications: a channel's whole retry budget, and some.
NOTIFY_WAIT_S = 45


class Terminated(BaseException):
    """SIGTERM arrived (a redeploy, `docker stop`, Railway ending a cron run)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM (`kill`, a redeploy, Railway ending a cron run) raises Terminated, so a
    command unwinds the way Ctrl-C unwinds it: an upload aborted, rclone's rcat killed and its temporary
    object removed, a restore's sessions stopped and the database --create made dropped. A second
    SIGTERM is ignored, so that this clean-up is not cut short. The handler that was there before is
    put back afterwards."""

    def terminated(_signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def restore_stopped(exc: BaseException, *, jobs: int, create: bool) -> int:
    """Say that Ctrl-C (KeyboardInterrupt) or SIGTERM (Terminated) stopped a restore into --target-url, and
    what was stopped; its exit status (130 or 143)."""
    say(
        f"restore {'interrupted' if isinstance(exc, KeyboardInterrupt) else 'stopped by SIGTERM'}; {what_stopped(jobs, create)}"
    )
    return 130 if isinstance(exc, KeyboardInterrupt) else EXIT_SIGTERM


def what_stopped(jobs: int, create: bool) -> str:
    """What a restore into --target-url that ended early stopped: one psql, or (--jobs N into the database
    --create made, which is then dropped) every connection."""
    return "psql was stopped before it could commit" if jobs == 1 or not create else "every connection was stopped"


def wait_for_notifications(reporter) -> None:
    """Give the reporter's notifications their time bound to go out before the command exits."""
    if not reporter.notifier.flush(timeout_s=NOTIFY_WAIT_S):
        say(f"notifications still unsent after {NOTIFY_WAIT_S} s were given up")


def drill_after_upload(reporter, job) -> None:
    """RESTORE_DRILL_URL is set: run the drill `job` of the new backup, say its outcome (it does not change
    upload's exit status) and wait for its notification."""
    report = reporter.drill_now(job)
    if report is not None and report.outcome == "ok":
        say(
            f"restore drill ok in {report.seconds:.1f} s: {report.tables} tables, {report.rows} rows match "
            f"({report.counts_from})"
        )
    elif report is not None:
        say(f"restore drill FAILED after {report.seconds:.1f} s: {report.error}")
    wait_for_notifications(reporter)
