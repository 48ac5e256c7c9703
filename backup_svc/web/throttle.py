"""Failed-authentication throttling per client address, in memory, with a bounded table."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

WINDOW_S = 60.0
MAX_TRACKED = 10_000  # ~100 bytes each: about 1 MB at most, whatever an attacker sends


class AuthThrottle:
    """At most `limit` failed authentications per key in a window that starts at the first failure.

    While a key is over its limit, `retry_after` says how long it must wait; callers refuse the
    request without checking its credentials, so a correct guess looks exactly like a wrong one
    until the window ends. Successes neither count nor reset anything.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = WINDOW_S,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limit = limit
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [window start, failures in it]; ordered by last failure, oldest first
        self._windows: OrderedDict[str, list] = OrderedDict()

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until `key` may try again, or None when it is not throttled."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return None
            started, failures = window
            if now - started >= self.window_s:
                del self._windows[key]
                return None
            if failures < self.limit:
                return None
            return max(1, math.ceil(started + self.window_s - now))

    def failed(self, key: str) -> None:
        """Count one failed authentication for `key`."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.window_s:
                window = [now, 0]
            window[1] += 1
            self._windows[key] = window
            self._windows.move_to_end(key)
            # Forget the keys that failed longest ago: the table stays bounded under a flood of
            # addresses (such a flood gets past a per-address limit anyway; the secrets' length is
            # what stops it).
            while len(self._windows) > self.max_tracked:
                self._windows.popitem(last=False)

    def tracked(self) -> int:
        """How many keys the table holds now."""
        with self._lock:
            return len(self._windows)
