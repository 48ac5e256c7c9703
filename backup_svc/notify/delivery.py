"""Sending events through the configured channels: brief retries, a bounded time, in the background.

A notification never changes a backup's outcome and never holds up the next one: `submit` only
queues the event for a worker thread; each channel gets a few attempts within a deadline; the last
problem is kept for the dashboard and every attempt is logged with URLs and passwords scrubbed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Callable

from backup_svc.notify.common import BACKUP, RESTORE, STALE, TEST, DeliveryFailed, Event, safe_url
from backup_svc.timefmt import iso, utc_now
from backup_svc.notify.heartbeat import send_heartbeat
from backup_svc.notify.mail import send_mail
from backup_svc.notify.settings import NotifySettings
from backup_svc.notify.shrink import SHRINK
from backup_svc.notify.webhook import send_webhook
from backup_svc.pg.scrub import scrub

log = logging.getLogger("backup_svc.notify")

# Events waiting for the worker; beyond this something is badly stuck and new ones are dropped (and said so).
QUEUE_SIZE = 50


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one channel tries for one event."""

    attempts: int = 3
    # Waits between attempts double from here: 2 s, 4 s ... long enough for a receiver's restart blip.
    backoff_s: float = 2.0
    # One attempt (connect + send + answer); a stuck receiver cannot hold the worker longer.
    attempt_timeout_s: float = 10.0
    # Everything for one channel and event, waits included.
    deadline_s: float = 30.0


@dataclass(frozen=True)
class Delivery:
    """How one channel fared with one event."""

    channel: str  # "email", "webhook" or "heartbeat"
    target: str  # where, without secrets
    event: str
    outcome: str  # the event's outcome, not the delivery's
    ok: bool
    attempts: int
    seconds: float
    error: str | None = None
    at: datetime = field(default_factory=utc_now)

    def as_dict(self) -> dict:
        return {**asdict(self), "at": iso(self.at)}


Sender = Callable[[Event, float], None]  # (event, timeout in seconds) -> None or DeliveryFailed


def deliver(
    channel: str,
    target: str,
    send: Sender,
    event: Event,
    policy: RetryPolicy,
    *,
    secrets: tuple[str, ...] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Try `send` up to policy.attempts times within policy.deadline_s; never raises."""
    started = time.monotonic()
    deadline = started + policy.deadline_s
    error = None
    attempt = 0
    while attempt < policy.attempts:
        attempt += 1
        timeout = min(policy.attempt_timeout_s, max(deadline - time.monotonic(), 0.5))
        try:
            send(event, timeout)
            seconds = time.monotonic() - started
            log.info(
                "notify: %s %s took the %s/%s event (attempt %d, %.1f s)",
                channel,
                target,
                event.kind,
                event.outcome,
                attempt,
                seconds,
            )
            return Delivery(channel, target, event.kind, event.outcome, True, attempt, seconds)
        except DeliveryFailed as exc:
            error, retry = scrub(str(exc), *secrets), exc.retry
        except Exception as exc:  # a bug in a channel must not reach the backup that reported
            error, retry = scrub(f"{type(exc).__name__}: {exc}", *secrets), False
        wait = policy.backoff_s * 2 ** (attempt - 1)
        if not retry or attempt >= policy.attempts or time.monotonic() + wait >= deadline:
            break
        log.warning(
            "notify: %s attempt %d of %d failed: %s; retrying in %.1f s", channel, attempt, policy.attempts, error, wait
        )
        sleep(wait)
    seconds = time.monotonic() - started
    log.error(
        "notify: %s gave up on the %s/%s event after %d attempt%s (%.1f s): %s",
        channel,
        event.kind,
        event.outcome,
        attempt,
        "" if attempt == 1 else "s",
        seconds,
        error,
    )
    return Delivery(channel, target, event.kind, event.outcome, False, attempt, seconds, error)


class Notifier:
    """The configured channels, a background worker that feeds them, and what happened lately."""

    def __init__(self, settings: NotifySettings, *, policy: RetryPolicy | None = None):
        self.settings = settings
        self.policy = policy or RetryPolicy()
        self._secrets = settings.secrets()
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.recent: deque[Delivery] = deque(maxlen=20)
        self.last_problem: Delivery | None = None
        # Told of each delivery that failed (the Reporter records it in the durable history).
        self.on_problem: Callable[[Delivery], None] | None = None

    # -- which channels speak -------------------------------------------------------------------
    def channels(self, event: Event, *, everything: bool = False) -> list[tuple[str, str, Sender]]:
        """(channel, target, sender) for each channel that should carry `event`.

        Email and webhook speak on failures, staleness and shrink warnings, and on successes too with
        NOTIFY_ON=always;
        the heartbeat pings after every stored backup, good or bad, whatever NOTIFY_ON says.
        `everything` (notify-test) picks every configured channel.
        """
        s = self.settings
        chosen = []
        speak = everything or event.failed or event.kind in (STALE, SHRINK, RESTORE) or s.notify_on == "always"
        if s.smtp and speak:
            chosen.append(
                ("email", s.smtp.describe(), lambda e, t: send_mail(s.smtp, s.email_from, s.email_to, e, timeout_s=t))
            )
        if s.webhook_url and speak:
            chosen.append(
                ("webhook", safe_url(s.webhook_url), lambda e, t: send_webhook(s.webhook_url, e, timeout_s=t))
            )
        if s.heartbeat_url and (event.kind == BACKUP or (everything and event.kind == TEST)):
            chosen.append(
                ("heartbeat", safe_url(s.heartbeat_url), lambda e, t: send_heartbeat(s.heartbeat_url, e, timeout_s=t))
            )
        return chosen

    # -- sending ----------------------------------------------------------------------------------
    def send(self, event: Event, *, everything: bool = False) -> list[Delivery]:
        """Deliver `event` now, every channel at once, in this thread; return how each fared."""
        channels = self.channels(event, everything=everything)
        results: list[Delivery | None] = [None] * len(channels)

        def run(i: int, channel: str, target: str, sender: Sender) -> None:
            results[i] = deliver(channel, target, sender, event, self.policy, secrets=self._secrets)

        threads = [
            threading.Thread(target=run, args=(i, *c), name=f"notify-{c[0]}", daemon=True)
            for i, c in enumerate(channels)
        ]
        for thread in threads:
            thread.start()
        limit = time.monotonic() + self.policy.deadline_s + self.policy.attempt_timeout_s
        for thread in threads:
            thread.join(timeout=max(limit - time.monotonic(), 0))
        done = []
        for (channel, target, _), result in zip(channels, results):
            if result is None:  # a sender ignored its timeout (it should not): report, move on
                result = Delivery(
                    channel,
                    target,
                    event.kind,
                    event.outcome,
                    False,
                    0,
                    self.policy.deadline_s,
                    "did not finish within its time limit",
                )
            self._record(result)
            done.append(result)
        return done

    def submit(self, event: Event) -> None:
        """Queue `event` for the background worker; returns at once, whatever the channels do."""
        if not self.channels(event):
            return
        self._ensure_worker()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._record(
                Delivery(
                    "all",
                    "-",
                    event.kind,
                    event.outcome,
                    False,
                    0,
                    0.0,
                    f"{QUEUE_SIZE} notifications are already waiting; this one was dropped",
                )
            )
            log.error("notify: queue full, dropped the %s/%s event", event.kind, event.outcome)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued event has been handled (for a command that exits next); True if so."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="notify-worker", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self.send(event)
            except Exception:  # keep the worker alive whatever happens
                log.exception("notify: unexpected error while sending a notification")
            finally:
                self._queue.task_done()

    # -- what happened ------------------------------------------------------------------------------
    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.recent.append(delivery)
            if not delivery.ok:
                self.last_problem = delivery
        if not delivery.ok and self.on_problem is not None:
            self.on_problem(delivery)

    def status(self) -> dict:
        """For the dashboard and the API: channels, the last delivery problem, recent deliveries."""
        with self._lock:
            return {
                "channels": self.settings.describe(),
                "last_problem": self.last_problem.as_dict() if self.last_problem else None,
                "recent": [d.as_dict() for d in self.recent],
            }
