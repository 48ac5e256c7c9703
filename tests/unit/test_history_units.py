"""The history's pure parts: event keys and the hash chain, the writer's queue (with a `put` that fails on
purpose — a stand-in for the bucket, the only way to script its failures exactly), and what the views read
off a list of events."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

from backup_svc.history import summary
from backup_svc.history.event import (
    AUDIT,
    OUTCOME,
    STORED_RUN,
    UPLOAD_TRIGGER,
    HistoryEvent,
    RunChain,
    canonical,
    digest,
    parse_name,
)
from backup_svc.history.hooks import record_run
from backup_svc.history.summary import stored_runs
from backup_svc.history.trail import History
from backup_svc.history.writer import HistoryWriter

T0 = datetime(2026, 12, 4, 10, 30, 5, 123000, tzinfo=timezone.utc)


def test_an_events_key_holds_its_day_time_run_number_and_hash():
    chain = RunChain("serve", run="0123456789ab")
    first = chain.make(AUDIT, "backup", {"outcome": "ok"}, T0)
    second = chain.make(OUTCOME, STORED_RUN, {"outcome": "failed"}, T0 + timedelta(seconds=1))

    assert first.name == f"2026/12/04/20261204T103005123Z-0123456789ab-000000-{first.sha256[:16]}.json"
    facts = parse_name(second.name)
    assert (facts.time, facts.run, facts.seq, facts.hash16) == (
        T0 + timedelta(seconds=1),
        "0123456789ab",
        1,
        second.sha256[:16],
    )
    assert first.body["prev"] is None and second.body["prev"] == first.sha256
    assert first.data == canonical(first.body) and digest(first.data) == first.sha256
    assert json.loads(second.data)["data"] == {"outcome": "failed"} and second.body["process"] == "serve"


def test_names_that_are_not_events_are_not_parsed():
    good = RunChain("serve").make(AUDIT, "backup", {}, T0).name
    for name in (
        "2026/12/04/notes.txt",
        good.replace(".json", ".json.bak"),
        "2026/12/05/" + good[11:],
        good.replace("2026/12/04/", ""),
        "x" + good,
    ):
        assert parse_name(name) is None, name
    assert parse_name(good) is not None


def test_a_chain_numbers_events_without_gaps_across_threads():
    chain = RunChain("serve")
    made: list[HistoryEvent] = []
    lock = threading.Lock()

    def make():
        for _ in range(50):
            event = chain.make(AUDIT, "backup", {}, T0)
            with lock:
                made.append(event)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_seq = sorted(made, key=lambda e: e.body["seq"])
    assert [e.body["seq"] for e in by_seq] == list(range(200))
    assert all(later.body["prev"] == earlier.sha256 for earlier, later in zip(by_seq, by_seq[1:]))


class ScriptedBucket:
    """`put` for the writer: fails while `failing` is set, records what it stored (by key, as S3 would)."""

    def __init__(self):
        self.failing = threading.Event()
        self.stored: dict[str, bytes] = {}
        self.calls = 0

    def put(self, event: HistoryEvent) -> None:
        self.calls += 1
        if self.failing.is_set():
            raise OSError("injected: the bucket refuses writes")
        self.stored[event.name] = event.data


def test_the_writer_never_blocks_keeps_events_while_the_bucket_fails_and_delivers_each_once():
    bucket = ScriptedBucket()
    bucket.failing.set()
    writer = HistoryWriter(bucket.put)
    chain = RunChain("serve")
    started = time.monotonic()
    events = [chain.make(AUDIT, "backup", {"n": n}, T0) for n in range(20)]
    for event in events:
        writer.add(event)
    assert time.monotonic() - started < 0.5  # add() only queues
    assert not writer.flush(1.0)
    status = writer.status()
    assert status.pending == 20 and not status.ok and "refuses writes" in status.problem()
    assert [e.name for e in writer.unwritten()] == [e.name for e in events]

    bucket.failing.clear()
    assert writer.flush(60)
    assert sorted(bucket.stored) == sorted(e.name for e in events)
    assert writer.status().ok and writer.status().written == 20 and writer.unwritten() == []
    writer.stop()


def test_the_writer_drops_the_oldest_when_too_many_wait_and_says_so():
    bucket = ScriptedBucket()
    bucket.failing.set()
    writer = HistoryWriter(bucket.put, max_pending=5)
    chain = RunChain("serve")
    events = [chain.make(AUDIT, "backup", {"n": n}, T0) for n in range(8)]
    for event in events:
        writer.add(event)
    # the bucket refuses every write, so nothing leaves the queue but what add() drops: the three oldest
    assert [e.name for e in writer.unwritten()] == [e.name for e in events[3:]]
    assert writer.status().dropped == 3 and "3 event(s) were dropped" in writer.status().problem()
    writer.stop()


def _events(*specs) -> list[HistoryEvent]:
    """Events from (kind, type, data, seconds after T0), newest first as the views get them."""
    chain = RunChain("serve")
    made = [chain.make(kind, type_, data, T0 + timedelta(seconds=s)) for kind, type_, data, s in specs]
    return sorted(made, key=lambda e: e.name, reverse=True)


def test_stored_runs_last_failure_and_last_scheduled_come_from_any_process():
    events = _events(
        (OUTCOME, STORED_RUN, {"trigger": "schedule", "outcome": "failed", "error": "pg_dump: no"}, 1),
        (OUTCOME, STORED_RUN, {"trigger": "upload command", "outcome": "ok"}, 2),
        (OUTCOME, STORED_RUN, {"trigger": "by hand", "outcome": "cancelled"}, 3),
        (AUDIT, "backup", {"outcome": "ok", "time": "t"}, 4),
    )
    runs = summary.stored_runs(events)
    assert runs["last_run"]["outcome"] == "cancelled"
    assert runs["last_failure"]["error"] == "pg_dump: no"
    assert runs["last_scheduled"]["trigger"] == "upload command" and runs["last_scheduled"]["process"] == "serve"


def test_recent_attempts_are_by_start_time_with_this_minutes_refusals_merged_in():
    events = _events(
        (AUDIT, "backup", {"outcome": "ok", "time": "2026-12-04T10:30:00.000Z"}, 0),
        (AUDIT, "stored-backup", {"outcome": "failed", "time": "2026-12-04T10:29:00.000Z"}, 5),
        (OUTCOME, STORED_RUN, {"outcome": "failed"}, 6),
    )
    open_refusals = [{"outcome": "denied", "time": "2026-12-04T10:29:30.000Z", "count": 4}]
    shown = summary.recent_attempts(events, open_refusals, 10)
    assert [(e["outcome"], e["time"][11:19]) for e in shown] == [
        ("ok", "10:30:00"),
        ("denied", "10:29:30"),
        ("failed", "10:29:00"),
    ]
    assert len(summary.recent_attempts(events, open_refusals, 2)) == 2


def test_an_alarm_counts_for_its_episode_only():
    events = _events((OUTCOME, "stale", {"outcome": "failed"}, 60))
    assert summary.alarm_sent_since(events, None)
    assert summary.alarm_sent_since(events, "2026-12-04T10:30:00Z")  # newest ok backup before the alarm
    assert not summary.alarm_sent_since(events, "2026-12-04T10:32:00Z")  # a newer backup ended that episode
    assert not summary.alarm_sent_since([], None)


def _cron_run(run_id: str, outcome: str, finished: float, error: str | None = None) -> list:
    """One `upload` process's stored-run event, as a cron service writes it (its own run id)."""
    history = History("upload")
    history.chain = RunChain("upload", run=run_id)
    record_run(history, trigger=UPLOAD_TRIGGER, outcome=outcome, started=finished - 0.1, finished=finished, error=error)
    return history.cached()


def test_a_failed_cron_run_in_the_same_second_as_a_good_one_is_the_last_scheduled_run():
    """Two cron runs, a good one and then a failed one, finishing within one second (a retry, or two cron
    services): the failed one is the last scheduled run, whatever their random run ids. Times used to be
    cut to the second, so the tie was broken by the run id — about 1 in 2 the good run came out newer and
    the web service judged the backups fresh (its "Backups are failing" notice missing)."""
    t = 1_796_000_000.2  # a whole second + 0.2
    for good_id, bad_id in (("ffffffffffff", "000000000000"), ("000000000000", "ffffffffffff")):
        events = History._merge(_cron_run(good_id, "ok", t), _cron_run(bad_id, "failed", t + 0.5, "refused"))
        runs = stored_runs(events)
        assert runs["last_scheduled"]["outcome"] == "failed", (good_id, bad_id)
        assert runs["last_run"]["outcome"] == "failed", (good_id, bad_id)
        # the bucket reader orders by event name: the same answer
        by_name = sorted(events, key=lambda e: e.name, reverse=True)
        assert stored_runs(by_name)["last_scheduled"]["outcome"] == "failed", (good_id, bad_id)
