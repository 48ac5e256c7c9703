"""Restores run by this worker: one at a time, none while a backup runs (and no backup while one
does), each in a thread of its own, audited and reported to the notification channels.

Undo and drop run in the request (a swap is bounded by RESTORE_SWAP_TIMEOUT) but take the same
turn: never beside a restore or a backup.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from datetime import datetime, timezone

from backup_svc.files.psqlfeed import RestoreFailed
from backup_svc.files.reader import BadBackup
from backup_svc.notify.common import FAILED, OK, RESTORE, Event
from backup_svc.restoring.engine import restore
from backup_svc.restoring.names import RESTORED, kept_name
from backup_svc.restoring.progress import CANCELLED, DONE, Cancelled, RestoreProgress
from backup_svc.restoring.progress import FAILED as JOB_FAILED
from backup_svc.restoring.server import ServerLink
from backup_svc.restoring.source import Source, remote_source, stored_source
from backup_svc.storage.rclone_target import RcloneTarget

log = logging.getLogger("backup_svc.restore")
KEEP = 20
# On exit, a running swap gets its whole RESTORE_SWAP_TIMEOUT plus this for the undo and the drop.
EXIT_MARGIN_S = 15


class Busy(Exception):
    """A backup or another restore runs; the message says which."""


class RestoreJobs:
    """The restores of this process: the running one and the latest finished ones."""

    def __init__(self, state):
        self.state = state
        self.link = ServerLink(state.settings.conn, timeout_s=state.settings.connect_timeout_s)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, RestoreProgress] = OrderedDict()
        self.running: RestoreProgress | None = None
        self._thread: threading.Thread | None = None

    def default_target(self) -> str:
        return kept_name(self.link.database, RESTORED, datetime.now(timezone.utc))

    def _take_turn(self, what: str) -> None:
        if not self.state.registry.hold(what):
            held = self.state.registry.held_by
            raise Busy(
                f"{held} runs; try again when it has finished"
                if held
                else "a backup is running; a restore starts only when none does"
            )

    def start(self, backup: str, mode: str, target: str, actor: str, facts: dict) -> RestoreProgress:
        """Start restoring the stored backup `backup` in the background; Busy when something runs."""
        self._take_turn(f"a restore of {backup} (by {actor})")
        job = RestoreProgress(
            id=secrets.token_urlsafe(9),
            backup=backup,
            mode=mode,
            database=self.link.database,
            target=target,
            actor=actor,
        )
        with self._lock:
            self.running = job
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)
        self._thread = threading.Thread(target=self._run, args=(job, facts), name=f"restore-{job.id}", daemon=True)
        self._thread.start()
        return job

    def stop(self) -> None:
        """The worker is exiting: cancel a restore before its swap, let a swap finish or undo itself, and wait.

        A worker killed outright mid-restore still commits nothing (psql dies with it), but may leave
        the half-built database, which the kept list shows; one killed mid-swap could leave the live
        database refusing connections, hence the wait of a whole swap.
        """
        job, thread = self.running, self._thread
        if job is None or thread is None:
            return
        job.cancel_requested.set()
        log.warning(
            "restore %s: the worker is exiting; %s",
            job.id,
            "waiting for the swap to finish or be undone" if job.phase == "swapping" else "cancelling it",
        )
        thread.join(self.state.settings.restore.swap_timeout_s + EXIT_MARGIN_S)

    def _source(self, name: str) -> Source:
        from backup_svc.storage.client import make_client

        storage = self.state.settings.storage
        if storage.is_rclone:  # read through `rclone cat`, with an upload's patient bounds
            return remote_source(
                RcloneTarget(storage.location, storage.client_env),
                name,
                identities=self.state.settings.encryption.identities,
            )
        client = make_client(storage.client_env)  # patient timeouts and retries, as an upload's
        return stored_source(
            client,
            storage.location.bucket,
            storage.location.key(name),
            name,
            identities=self.state.settings.encryption.identities,  # BACKUP_AGE_IDENTITY
            dedup_secret=storage.dedup_key,
        )  # BACKUP_DEDUP_KEY: a dedup backup's chunks

    def _run(self, job: RestoreProgress, facts: dict) -> None:
        settings = self.state.settings
        try:
            restore(
                self._source(job.backup),
                self.link,
                job,
                bin_dirs=settings.pg_bin_dirs,
                swap_timeout_s=settings.restore.swap_timeout_s,
                jobs=settings.restore.jobs,  # RESTORE_JOBS
                say=lambda line: log.info("restore %s: %s", job.id, line),
            )
            job.end(DONE)
        except Cancelled:
            job.end(
                CANCELLED, f"cancelled before the swap; {job.target!r} was dropped and {job.database!r} was not touched"
            )
        except BadBackup as exc:
            job.end(JOB_FAILED, f"the backup cannot be restored: {exc}; nothing was created")
        except RestoreFailed as exc:
            job.end(JOB_FAILED, self._failure_words(job, str(exc)))
        except Exception as exc:  # storage failing mid-read, a bug: reported, never raised into the thread
            reason = self.link.scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
            job.end(JOB_FAILED, self._failure_words(job, reason.splitlines()[0]))
        finally:
            with self._lock:
                self.running = None
            self.state.registry.release_hold()
        self._tell(job, facts)

    @staticmethod
    def _failure_words(job: RestoreProgress, reason: str) -> str:
        if job.phase in ("privileges", "checking"):
            return f"{reason}; nothing was created"
        if job.phase == "swapping":
            return reason + ("" if "could not be fully undone" in reason else f"; {job.target!r} was dropped")
        return f"{reason}; {job.target!r} was dropped and {job.database!r} was not touched"

    def _tell(self, job: RestoreProgress, facts: dict) -> None:
        """Audit and notify one finished restore."""
        details = {
            "mode": job.mode,
            "target": job.target,
            "kept_as": job.kept_as,
            "phase": job.phase,
            "downtime_s": job.closed_s,
            "rows": job.rows,
        }
        self.record(
            "restore",
            job.actor,
            facts,
            "ok" if job.state == DONE else job.state,
            job.started,
            name=job.backup,
            error=job.error,
            backup_id=job.id,
            details=details,
        )
        if job.state == DONE and job.mode == "replace":
            summary = (
                f"{job.backup} was restored and swapped in for {job.database} by {job.actor} "
                f"(connections refused for {job.closed_s:.1f} s); the replaced data is kept as {job.kept_as}."
            )
        elif job.state == DONE:
            summary = f"{job.backup} was restored into the new database {job.target} by {job.actor}."
        else:
            summary = f"The restore of {job.backup} ({job.mode}) by {job.actor} {job.state}: {job.error}"
        self.notify("restore", job.state == DONE, summary, job.backup, job.error, details)

    def record(self, event: str, actor: str, facts: dict, outcome: str, started: float, **kwargs) -> None:
        self.state.audit.record(
            event=event,
            actor=actor,
            outcome=outcome,
            started=started,
            client=facts.get("client"),
            user_agent=facts.get("user_agent"),
            **kwargs,
        )

    def notify(self, action: str, ok: bool, summary: str, name: str | None, error: str | None, details: dict) -> None:
        now = datetime.now(timezone.utc)
        self.state.reporter.notifier.submit(
            Event(
                kind=RESTORE,
                outcome=OK if ok else FAILED,
                database=self.link.database,
                name=name,
                error=error,
                finished=now,
                details={"action": action, "summary": summary, **details},
            )
        )

    def exclusive(self, what: str):
        """`with jobs.exclusive("an undo"):` — no backup and no restore beside it; Busy otherwise."""
        jobs = self

        class _Turn:
            def __enter__(self):
                jobs._take_turn(what)

            def __exit__(self, *exc):
                jobs.state.registry.release_hold()

        return _Turn()

    def get(self, job_id: str) -> RestoreProgress | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[RestoreProgress]:
        with self._lock:
            return list(reversed(self._jobs.values()))
