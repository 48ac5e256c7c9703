"""Stopping a stored backup from another thread (the server shutting down, a cancel): at once, whatever
the run is doing — waiting for pg_dump's locks, sending a part, completing.

A flag checked only when bytes arrive is not enough: pg_dump waiting on a lock writes nothing, and a
part on a slow link blocks the writer for as long as it takes. So the flag is watched by a thread
that stops pg_dump the moment it is set; the upload checks it too (upload.py) and stops waiting.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol, TypeVar

from backup_svc.pg.diagnose import ABORTED

T = TypeVar("T")
SHUTTING_DOWN = "stopped: the service is shutting down"
# How often the watcher looks at the flag: well inside any grace period.
POLL_S = 0.1


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class StoredBackupCancelled(Exception):
    """The stored backup was told to stop (the server is shutting down); its upload is aborted."""


def cancelled_as_such(cancel: StopFlag, take: Callable[[], T]) -> T:
    """`take()`; whatever it raises once `cancel` is set is reported as StoredBackupCancelled (that is why it
    broke: an aborted upload, a killed pg_dump), with the original as its cause."""
    try:
        return take()
    except Exception as exc:
        if cancel.is_set() and not isinstance(exc, StoredBackupCancelled):
            raise StoredBackupCancelled(SHUTTING_DOWN) from exc
        raise


class CancellableSink:
    """Passes bytes to the upload; raises StoredBackupCancelled once `cancel` is set."""

    def __init__(self, upload, cancel: StopFlag):
        self.upload = upload
        self.cancel = cancel

    def write(self, data: bytes) -> int:
        if self.cancel.is_set():
            raise StoredBackupCancelled(SHUTTING_DOWN)
        return self.upload.write(data)


class DumpStopper:
    """`with DumpStopper(flag) as stopper:` — while inside, pg_dump (handed over by `created`) is
    stopped as soon as `flag` is set; `interrupt` stops it before its first byte."""

    def __init__(self, flag: StopFlag):
        self.flag = flag
        self._dump = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stored-backup-stop", daemon=True)

    def __enter__(self) -> "DumpStopper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def created(self, dump) -> None:
        self._dump = dump

    def interrupt(self):
        return (ABORTED, SHUTTING_DOWN) if self.flag.is_set() else None

    def _watch(self) -> None:
        while not self._done.wait(POLL_S):
            if self.flag.is_set():
                dump = self._dump
                if dump is not None:
                    dump.stop(ABORTED, SHUTTING_DOWN)
                    return


def stoppable_dump(
    options,
    sink,
    cancel: StopFlag,
    *,
    application_name: str,
    progress,
    count_rows: bool,
    created: Callable | None = None,
    sha256: bool = True,
):
    """dump/backup.py's write_backup into `sink`, stopped as soon as `cancel` is set: refused before pg_dump's
    first byte, pg_dump stopped after it, and the sink's next write raising StoredBackupCancelled. `created(dump,
    stopper)` runs as pg_dump is made (the stopper's own hook by default). The BackupWritten."""
    from backup_svc.dump.backup import write_backup

    with DumpStopper(cancel) as stopper:
        return write_backup(
            options,
            CancellableSink(sink, cancel),
            application_name=application_name,
            progress=progress,
            count_rows=count_rows,
            sha256=sha256,
            interrupt=stopper.interrupt,
            created=(lambda dump: created(dump, stopper)) if created is not None else stopper.created,
        )
