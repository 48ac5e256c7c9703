"""Stored backups meet notifications: one backup's result (or exception) becomes an Event, a good
one is drilled, and the newest stored backup's time feeds the staleness alarm.

Used by the `upload` command and by the scheduler in `serve` (which the API's "store one now" also
goes through), so every stored backup is reported the same way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterator

from backup_svc.crypto.settings import EncryptionSettings
from backup_svc.dump.options import DumpOptions
from backup_svc.notify.common import BACKUP, FAILED, OK, Event
from backup_svc.notify.drill import DrillReport, run_drill
from backup_svc.notify.drillbounds import drill_timeout_s
from backup_svc.notify.reporter import Reporter
from backup_svc.notify.settings import NotifySettings
from backup_svc.notify.shrink import shrink_event
from backup_svc.notify.staleness import Staleness
from backup_svc.pg.scrub import scrub
from backup_svc.storage.status import schedule_interval
from backup_svc.timefmt import iso, utc_now

if TYPE_CHECKING:
    from backup_svc.storage.settings import StorageSettings

log = logging.getLogger("backup_svc.notify")


@dataclass(frozen=True)
class StoredSetup:
    """What the work around stored backups uses: the dump's options and the storage and notification
    settings (None: that part is not set up). Built from config.Settings by those above it."""

    dump: DumpOptions
    storage: StorageSettings | None
    notify: NotifySettings | None
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)  # BACKUP_AGE_*


def reporter_for(setup: StoredSetup) -> Reporter:
    """The Reporter for these settings (channels may be none: staleness is still tracked)."""
    return Reporter(setup.notify or NotifySettings(), setup.dump.conn.dbname)


@dataclass
class StoredBackupOutcome:
    """Filled in by the caller inside `reporting(...)`: the stored object once it is complete."""

    name: str
    bucket: str | None = None
    key: str | None = None
    size: int | None = None
    sha256: str | None = None
    rows: int | None = None
    shrink: dict | None = None  # the shrink alarm's finding (storage.shape.ShrinkFinding.as_json())
    # the restore drill of what was stored, when it is not in a bucket (an rclone remote's: remote_drill.py)
    drill: Callable[[], DrillReport] | None = None

    def stored(
        self, stored, shrink=None, rows: int | None = None, drill: Callable[[], DrillReport] | None = None
    ) -> None:
        """Record the StoredObject that `take_stored_backup` returned, its rows and shrink finding if any."""
        from backup_svc.storage.listing import backup_size

        # a dedup backup's size is its chunks' (as `list` shows it), not its manifest's
        self.bucket, self.key, self.sha256 = stored.bucket, stored.key, stored.sha256
        self.size = backup_size(stored.size, stored.metadata)
        self.rows = rows
        self.shrink = shrink.as_json() if shrink is not None else None
        self.drill = drill

    def held_url(self) -> str | None:
        """`s3://bucket/<prefix><held backup>`: where the backup kept by the shrink alarm is."""
        if not (self.shrink and self.bucket and self.key):
            return None
        folder = self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""
        return f"s3://{self.bucket}/{folder}{self.shrink['held']}"


def _not_a_failure(exc: BaseException) -> bool:
    from backup_svc.storage.lock import AnotherBackupRunning

    return isinstance(exc, AnotherBackupRunning)  # another process is storing it, and will report it


def failure_reason(exc: BaseException, *secrets: str | None) -> str:
    """One secret-free line for whatever ended a stored backup."""
    reason = (
        getattr(exc, "message", None)
        or str(exc)
        or {"KeyboardInterrupt": "interrupted (Ctrl-C)", "Terminated": "stopped by SIGTERM"}.get(
            type(exc).__name__, type(exc).__name__
        )
    )
    return scrub(reason.splitlines()[0], *secrets)


@contextlib.contextmanager
def reporting(
    reporter: Reporter, setup: StoredSetup, name: str, *, drill_after: bool = True
) -> Iterator[StoredBackupOutcome]:
    """`with reporting(...) as outcome: result = take_stored_backup(..., name=name); outcome.stored(result.stored, …)`

    On the way out: a failed (raised) backup is reported and the exception goes on; a good one is
    reported and, with RESTORE_DRILL_URL set and `drill_after`, drilled in the background (a command
    that exits next drills itself, with `drill_stored_object`). Another process holding the lock is
    no failure and is not reported.
    """
    outcome = StoredBackupOutcome(name=name)
    started = utc_now()
    try:
        yield outcome
    except BaseException as exc:
        if not _not_a_failure(exc):
            # no `name`: nothing was stored under it
            reporter.backup_finished(
                Event(
                    kind=BACKUP,
                    outcome=FAILED,
                    database=reporter.database,
                    error=failure_reason(exc, setup.dump.conn.password),
                    started=started,
                    finished=utc_now(),
                )
            )
        raise
    event = Event(
        kind=BACKUP,
        outcome=OK,
        database=reporter.database,
        name=name,
        bytes=outcome.size,
        sha256=outcome.sha256,
        started=started,
        finished=utc_now(),
    )
    job = (
        (outcome.drill or (lambda: drill_stored_object(setup, outcome.bucket, outcome.key)))
        if outcome.key and drill_after and reporter.drills_enabled
        else None
    )
    reporter.backup_finished(event, drill=job)
    if outcome.shrink is not None:
        reporter.warn(
            shrink_event(
                outcome.shrink,
                database=reporter.database,
                size=outcome.size,
                sha256=outcome.sha256,
                rows=outcome.rows,
                finished=event.finished,
                held_url=outcome.held_url(),
            )
        )


def drill_stored_object(
    setup: StoredSetup, bucket: str, key: str, *, client=None, say: Callable[[str], None] = lambda _: None
) -> DrillReport:
    """Drill `s3://bucket/key`: the object is streamed (no temp file), its metadata gives the row counts."""
    from backup_svc.crypto.decrypt import decrypting_opener
    from backup_svc.storage.dedup.source import logical_size, stored_opener
    from backup_svc.storage.client import make_client
    from backup_svc.storage.reader import open_object

    client = client if client is not None else make_client(setup.storage.client_env)
    url = f"s3://{bucket}/{key}"
    try:
        first = open_object(client, bucket, key)  # fails early, with one line, when it cannot be read
    except Exception as exc:
        report = DrillReport(name=key.rsplit("/", 1)[-1], error=f"cannot read {url}: {failure_reason(exc)}")
        report.finished = utc_now()
        return report
    # a dedup manifest streams the SQL from its chunks, checked with BACKUP_DEDUP_KEY
    # `drill s3://…` may run without BACKUP_STORAGE_URL: a dedup manifest is then read without the chunk key
    # (each chunk's id unchecked; the whole SQL's sha256 still is)
    dedup_key = setup.storage.dedup_key if setup.storage is not None else None
    opener = stored_opener(client, bucket, key, first, dedup_key, setup.encryption.identities)
    # an age-encrypted object is decrypted with BACKUP_AGE_IDENTITY; without it the drill says it needs it
    opener = decrypting_opener(url, opener, setup.encryption.identities)
    return run_drill(
        url,
        key.rsplit("/", 1)[-1],
        setup.notify.drill,
        source=setup.dump.conn,
        opener=opener,
        size=logical_size(key, first.metadata, first.size),
        metadata=first.metadata,
        bin_dirs=setup.dump.pg_bin_dirs,
        timeout_s=setup.dump.connect_timeout_s,
        say=say,
        deadline_s=drill_timeout_s(setup.notify.drill_timeout_s, first.size),
    )


def newest_stored(setup: StoredSetup, client=None, owner=None):
    """The newest of this service's stored backups (the same set retention and the dashboard read:
    storage/listing.py), or None; StorageError when it cannot be listed. `owner`: an OwnerLookup."""
    from backup_svc.storage.destination import destination_for
    from backup_svc.storage.listing import list_backups
    from backup_svc.storage.location import BackupNames
    from backup_svc.storage.take import owner_lookup

    owner = owner if owner is not None else owner_lookup(setup.dump)
    if client is None:  # the bucket or the rclone remote BACKUP_STORAGE_URL names
        return destination_for(setup.storage).newest(setup.dump.backup_name, owner.get())
    backups = list_backups(client, setup.storage.location, BackupNames(setup.dump.backup_name), owner.get())
    return backups[0] if backups else None


def check_staleness(
    reporter: Reporter, setup: StoredSetup, newest_time: datetime | None, when: datetime | None = None, *, history=None
) -> Staleness | None:
    """Staleness for a configured schedule — BACKUP_SCHEDULE, or BACKUP_EXPECTED_SCHEDULE when another
    process takes the backups — (None without one); sends the episode's one alarm.

    With a `history` (history.trail.History), a failed last scheduled run in it makes the backups stale,
    and an alarm already in it for this episode (sent by this process before a restart, or by another
    replica) is not sent again.
    """
    schedule = setup.storage.watched_schedule if setup.storage else None
    if schedule is None:
        return None
    when = when or utc_now()
    interval: timedelta = schedule_interval(schedule, when)
    already = last_failed = None
    if history is not None:
        from backup_svc.history.summary import alarm_sent_since, last_scheduled_failure

        events = history.cached()
        already = lambda: alarm_sent_since(events, iso(newest_time))  # noqa: E731
        last_failed = last_scheduled_failure(events)
    return reporter.check_staleness(newest_time, interval, when, already_alarmed=already, last_failed=last_failed)


class StalenessWatch:
    """A daemon thread in `serve` that lists the newest stored backup every few minutes and checks it.

    It runs beside the scheduler, not in it, so a stuck or dead scheduler is noticed too.
    """

    # A listing is one cheap request; every 5 minutes is prompt enough for an alarm measured in hours,
    # and a quarter of the schedule's interval keeps a short schedule's alarm within 1.5-1.75 intervals.
    INTERVAL_S = 300.0
    MIN_INTERVAL_S = 10.0

    def __init__(
        self, reporter: Reporter, setup: StoredSetup, *, interval_s: float | None = None, client=None, history=None
    ):
        import threading

        from backup_svc.storage.take import owner_lookup

        self.reporter, self.setup, self.client, self.history = reporter, setup, client, history
        self.owner = owner_lookup(setup.dump)  # asks the database once for the cluster's identity
        self._newest_run: dict | None = None
        # the periodic check and the one after a new run never interleave: the later one judges last
        self._checking = threading.Lock()
        self.interval_s = interval_s or self.cadence_s(setup)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="staleness-watch", daemon=True)

    @classmethod
    def cadence_s(cls, setup: StoredSetup) -> float:
        """Seconds between checks: every 5 minutes, or a quarter of a shorter schedule's interval."""
        schedule = setup.storage.watched_schedule if setup.storage else None
        if schedule is None:
            return cls.INTERVAL_S
        quarter = schedule_interval(schedule, utc_now()).total_seconds() / 4
        return max(cls.MIN_INTERVAL_S, min(cls.INTERVAL_S, quarter))

    def start(self) -> "StalenessWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> Staleness | None:
        """List, check, alarm once per episode; a listing that fails is logged and changes nothing."""
        with self._checking:
            return self._check()

    def _check(self) -> Staleness | None:
        try:
            newest = newest_stored(self.setup, self.client, self.owner)
        except Exception as exc:
            log.warning("staleness check: cannot list stored backups: %s", failure_reason(exc))
            return self.reporter.staleness
        reader = self.history.reader if self.history is not None else None
        if reader is not None and not reader.loaded:
            reader.refresh()  # an alarm sent before a restart is in there: not sent twice
        return check_staleness(self.reporter, self.setup, newest.time if newest else None, history=self.history)

    def check_after_new_run(self) -> None:
        """Check now when the history shows a stored backup run not seen before (another process's, too)."""
        from backup_svc.history.summary import stored_runs

        # the whole run, not its time: two runs in one millisecond are still two runs
        seen = stored_runs(self.history.cached())["last_run"] if self.history is not None else None
        if seen != self._newest_run:
            self._newest_run = seen
            self.check_once()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.check_once()
            self._stop.wait(max(self.interval_s - (time.monotonic() - started), 1.0))
