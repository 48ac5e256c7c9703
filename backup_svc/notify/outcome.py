"""Stored backups meet notifications: one backup's result (or exception) becomes an Event, a good
one is drilled, and the newest stored backup's time feeds the staleness alarm.

Used by the `upload` command and by the scheduler in `serve` (which the API's "store one now" also
goes through), so every stored backup is reported the same way.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterator

from backup_svc.notify.common import BACKUP, FAILED, OK, Event, now
from backup_svc.notify.drill import DrillReport, run_drill
from backup_svc.notify.reporter import Reporter
from backup_svc.notify.settings import NotifySettings
from backup_svc.notify.staleness import Staleness, schedule_interval
from backup_svc.pg.scrub import scrub

if TYPE_CHECKING:
    from backup_svc.config import Settings

log = logging.getLogger("backup_svc.notify")


def reporter_for(settings: Settings) -> Reporter:
    """The Reporter for these settings (channels may be none: staleness is still tracked)."""
    return Reporter(settings.notify or NotifySettings(), settings.conn.dbname)


@dataclass
class StoredBackupOutcome:
    """Filled in by the caller inside `reporting(...)`: the stored object once it is complete."""

    name: str
    bucket: str | None = None
    key: str | None = None
    size: int | None = None
    sha256: str | None = None

    def stored(self, stored) -> None:
        """Record the StoredObject that `take_stored_backup` returned."""
        self.bucket, self.key, self.size, self.sha256 = stored.bucket, stored.key, stored.size, stored.sha256


def _not_a_failure(exc: BaseException) -> bool:
    from backup_svc.storage.lock import AnotherBackupRunning

    return isinstance(exc, AnotherBackupRunning)  # another process is storing it, and will report it


def failure_reason(exc: BaseException, *secrets: str | None) -> str:
    """One secret-free line for whatever ended a stored backup."""
    reason = getattr(exc, "message", None) or str(exc) or {
        "KeyboardInterrupt": "interrupted (Ctrl-C)", "Terminated": "stopped by SIGTERM"}.get(
        type(exc).__name__, type(exc).__name__)
    return scrub(reason.splitlines()[0], *secrets)


@contextlib.contextmanager
def reporting(reporter: Reporter, settings: Settings, name: str, *,
              drill_after: bool = True) -> Iterator[StoredBackupOutcome]:
    """`with reporting(...) as outcome: result = take_stored_backup(..., name=name); outcome.stored(result.stored)`

    On the way out: a failed (raised) backup is reported and the exception goes on; a good one is
    reported and, with RESTORE_DRILL_URL set and `drill_after`, drilled in the background (a command
    that exits next drills itself, with `drill_stored_object`). Another process holding the lock is
    no failure and is not reported.
    """
    outcome = StoredBackupOutcome(name=name)
    started = now()
    try:
        yield outcome
    except BaseException as exc:
        if not _not_a_failure(exc):
            # no `name`: nothing was stored under it
            reporter.backup_finished(Event(kind=BACKUP, outcome=FAILED, database=reporter.database,
                                           error=failure_reason(exc, settings.conn.password), started=started,
                                           finished=now()))
        raise
    event = Event(kind=BACKUP, outcome=OK, database=reporter.database, name=name, bytes=outcome.size,
                  sha256=outcome.sha256, started=started, finished=now())
    job = (lambda: drill_stored_object(settings, outcome.bucket, outcome.key)) \
        if outcome.key and drill_after and reporter.drills_enabled else None
    reporter.backup_finished(event, drill=job)


def drill_stored_object(settings: Settings, bucket: str, key: str, *, client=None,
                        say: Callable[[str], None] = lambda _: None) -> DrillReport:
    """Drill `s3://bucket/key`: the object is streamed (no temp file), its metadata gives the row counts."""
    from backup_svc.crypto.decrypt import decrypting_opener
    from backup_svc.storage.client import make_client
    from backup_svc.storage.reader import open_object

    client = client if client is not None else make_client(settings.storage.client_env)
    url = f"s3://{bucket}/{key}"
    try:
        first = open_object(client, bucket, key)  # fails early, with one line, when it cannot be read
    except Exception as exc:
        report = DrillReport(name=key.rsplit("/", 1)[-1], error=f"cannot read {url}: {failure_reason(exc)}")
        report.finished = now()
        return report
    opened = [first]

    def opener():
        return opened.pop() if opened else open_object(client, bucket, key)

    # an age-encrypted object is decrypted with BACKUP_AGE_IDENTITY; without it the drill says it needs it
    opener = decrypting_opener(url, opener, settings.encryption.identities)
    return run_drill(url, key.rsplit("/", 1)[-1], settings.notify.drill, source=settings.conn, opener=opener,
                     size=first.size, metadata=first.metadata, bin_dirs=settings.pg_bin_dirs,
                     timeout_s=settings.connect_timeout_s, say=say)


def newest_stored(settings: Settings, client=None):
    """The newest StoredBackup under the prefix, or None; StorageError when it cannot be listed."""
    from backup_svc.storage.client import make_client
    from backup_svc.storage.listing import list_backups
    from backup_svc.storage.location import BackupNames

    client = client if client is not None else make_client(settings.storage.client_env)
    backups = list_backups(client, settings.storage.location, BackupNames(settings.backup_name))
    return backups[0] if backups else None


def check_staleness(reporter: Reporter, settings: Settings, newest_time: datetime | None,
                    when: datetime | None = None) -> Staleness | None:
    """Staleness for a configured schedule (None without one); sends the episode's one alarm."""
    schedule = settings.storage.schedule if settings.storage else None
    if schedule is None:
        return None
    when = when or now()
    interval: timedelta = schedule_interval(schedule.next_after, when)
    return reporter.check_staleness(newest_time, interval, when)


class StalenessWatch:
    """A daemon thread in `serve` that lists the newest stored backup every few minutes and checks it.

    It runs beside the scheduler, not in it, so a stuck or dead scheduler is noticed too.
    """

    # A listing is one cheap request; every 5 minutes is prompt enough for an alarm measured in hours.
    INTERVAL_S = 300.0

    def __init__(self, reporter: Reporter, settings: Settings, *, interval_s: float | None = None, client=None):
        import threading

        self.reporter, self.settings, self.client = reporter, settings, client
        self.interval_s = interval_s or self.INTERVAL_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="staleness-watch", daemon=True)

    def start(self) -> "StalenessWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> Staleness | None:
        """List, check, alarm once per episode; a listing that fails is logged and changes nothing."""
        try:
            newest = newest_stored(self.settings, self.client)
        except Exception as exc:
            log.warning("staleness check: cannot list stored backups: %s", failure_reason(exc))
            return self.reporter.staleness
        return check_staleness(self.reporter, self.settings, newest.time if newest else None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.check_once()
            self._stop.wait(max(self.interval_s - (time.monotonic() - started), 1.0))
