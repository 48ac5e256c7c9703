"""Storage calls that a person waits for, answered within a deadline even when the storage hangs.

The S3 client's own timeouts bound each request, but a listing is several requests and a storage
provider can accept a connection and then say nothing for a long time. A page must not wait that
long: the call runs in a worker thread and the caller gets StorageTimeout when the deadline passes.
Identical calls in flight are joined, not repeated, so a slow storage and an impatient user (or many)
never pile up threads: at most `workers` calls run, each ending by the client's own timeouts.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Hashable, TypeVar

from .client import StorageError

T = TypeVar("T")


class StorageTimeout(StorageError):
    """The storage did not answer within the deadline (the call may still finish in the background)."""


class BoundedCalls:
    """Run storage calls in a few worker threads; callers wait at most their deadline."""

    def __init__(self, workers: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storage-call")
        # Reentrant: a future that is already done runs its callback (which takes the lock) at once.
        self._lock = threading.RLock()
        self._in_flight: dict[Hashable, Future] = {}

    def call(self, key: Hashable, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        """`fn()`'s result, or its exception; StorageTimeout naming `what` after `timeout_s` seconds.

        A call with the same `key` already running is waited for instead of starting another.
        """
        with self._lock:
            future = self._in_flight.get(key)
            if future is None:
                future = self._pool.submit(fn)
                self._in_flight[key] = future
                future.add_done_callback(lambda done, key=key: self._forget(key, done))
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            raise StorageTimeout(f"{what} did not answer within {timeout_s:g} s") from None

    def _forget(self, key: Hashable, done: Future) -> None:
        with self._lock:
            if self._in_flight.get(key) is done:
                del self._in_flight[key]

    def shutdown(self) -> None:
        """Stop accepting calls; running ones end by the client's timeouts."""
        self._pool.shutdown(wait=False, cancel_futures=True)
