"""Stored backups whose worker was killed outright (SIGKILL: the out-of-memory killer, a hung worker's
last resort) — reported once, by the next worker.

A killed process runs no code, so it cannot say it failed, and before this nobody was told: the master
only logged "Worker … was sent SIGKILL! Perhaps out of memory?", and the incomplete upload stayed a
day. So each stored backup run leaves a marker file in the master's private run directory while it
runs (`RunMarkers.running`) and removes it when it ends, however it ends short of being killed. The
worker that the master starts next finds the markers of workers that are gone (`report_unfinished`):
it aborts that run's incomplete upload at once, reports the failure on every configured channel
(mail, webhook, heartbeat `/fail`) and records it in the durable history — once: the marker is
removed before anything is reported, by whichever worker removes it first.

Not covered: the master (or the whole container) killed as well — its run directory goes with it;
the heartbeat's silence and the staleness alarm tell of that, and the next run aborts the upload
once it is a day old.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

log = logging.getLogger("backup_svc.server")

PREFIX, SUFFIX = "stored-run-", ".json"


class RunMarkers:
    """The master's run directory (created before workers fork; removed when the master exits)."""

    def __init__(self, directory: Path | None = None):
        self.directory = directory or Path(tempfile.mkdtemp(prefix="backup_svc-run-"))  # mode 0700

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def running(self, **facts) -> Iterator[None]:
        """While the block runs, a marker says this worker runs a stored backup (`facts`: name, key, …)."""
        path = self.directory / f"{PREFIX}{os.getpid()}{SUFFIX}"
        try:
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps({**facts, "pid": os.getpid()}))
            partial.replace(path)  # never a half-written marker
        except OSError as exc:  # the backup matters more than its marker
            log.warning("could not leave the stored backup's run marker in %s: %s", self.directory, exc)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def claim_left_behind(self) -> list[dict]:
        """The markers of workers that are gone, each removed from the directory as it is taken (once)."""
        taken = []
        for path in sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}")):
            try:
                pid = int(path.name[len(PREFIX) : -len(SUFFIX)])
            except ValueError:
                continue
            if pid == os.getpid() or _sibling_alive(pid):
                continue  # a worker still running (an overlap during gunicorn's reload): its run goes on
            try:
                facts = json.loads(path.read_text())
                path.unlink()  # whoever removes it reports it
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("an unreadable run marker %s was removed: %s", path.name, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            taken.append(facts)
        return taken


def _sibling_alive(pid: int) -> bool:
    """Whether `pid` is another live child of this worker's master (a reused pid is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return len(fields) > 1 and fields[0] != "Z" and fields[1] == str(os.getppid())


def killed_message(facts: dict, aborted: int | None, abort_error: str | None) -> str:
    """One line: what happened to the run and what is left in the bucket."""
    what = (
        f"the worker process (pid {facts.get('pid')}) running it was killed before it finished "
        f"(SIGKILL: most likely the out-of-memory killer; the service's log has the master's line)"
    )
    if abort_error is not None:
        return (
            f"{what}; its incomplete upload could not be aborted ({abort_error}): the next run aborts it "
            f"once it is a day old"
        )
    if aborted:
        return f"{what}; its incomplete upload was aborted"
    return f"{what}; no incomplete upload of it was left"


def report_unfinished(markers: RunMarkers, stored) -> threading.Thread:
    """In a new worker, in the background (it talks to the bucket): report each run a killed worker left.

    `stored` is the worker's StoredBackups (runs/scheduler.py)."""

    def run() -> None:
        for facts in markers.claim_left_behind():
            try:
                _report(facts, stored)
            except Exception:  # a bug here must not take the worker down
                log.exception("reporting the stored backup a killed worker left failed")

    thread = threading.Thread(target=run, name="unfinished-runs", daemon=True)
    thread.start()
    return thread


def _report(facts: dict, stored) -> None:
    from backup_svc.notify.common import BACKUP, FAILED, Event
    from backup_svc.storage.client import StorageError
    from backup_svc.timefmt import utc_now

    aborted, abort_error = None, None
    try:
        aborted = stored.destination.clean_after_kill(facts)  # a bucket's incomplete upload, a remote's temporary
    except StorageError as exc:
        abort_error = str(exc).splitlines()[0]
    error = killed_message(facts, aborted, abort_error)
    what = "scheduled stored backup" if facts.get("trigger") == "schedule" else "stored backup started by hand"
    log.error("%s %s: %s", what, facts.get("name"), error)
    started = float(facts.get("started") or time.time())
    reporter = stored.state.reporter
    reporter.backup_finished(
        Event(
            kind=BACKUP,
            outcome=FAILED,
            database=reporter.database,
            error=error,
            started=datetime.fromtimestamp(started, timezone.utc),
            finished=utc_now(),
        )
    )
    stored.remember_unfinished(
        trigger=facts.get("trigger"),
        actor=facts.get("actor"),
        started=started,
        name=facts.get("name"),
        backup_id=facts.get("id"),
        error=error,
    )
