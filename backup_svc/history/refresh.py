"""The background side of the history in `serve`: a daemon thread that keeps the bucket's newest events at
hand (so the dashboard never waits for the bucket) and hands closed refusal aggregates to the writer."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .trail import History

log = logging.getLogger("backup_svc.history")

# Another process's run (a cron service's upload) shows on the dashboard within this many seconds.
REFRESH_S = 10.0


class HistoryRefresher:
    """Refreshes `history`'s view of the bucket every `interval_s` and calls each of `ticks`; `stop()` ends it."""

    def __init__(self, history: History, ticks: tuple[Callable[[], None], ...] = (), *, interval_s: float = REFRESH_S):
        self.history, self.ticks, self.interval_s = history, ticks, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="history-refresh", daemon=True)

    def start(self) -> "HistoryRefresher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.history.reader is not None:
                self.history.reader.refresh()
            for tick in self.ticks:
                try:
                    tick()
                except Exception:
                    log.exception("history: a background step failed")
            self._stop.wait(self.interval_s)
