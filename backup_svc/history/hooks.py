"""The narrow hooks between the rest of the service and its history: one History per process, the sinks
the audit trail and the notify Reporter call, and the record of a stored backup run.

Everything here returns at once: events go to memory and to the background writer, never straight
to the bucket.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Mapping

from backup_svc.timefmt import iso_utc

from .bucket import HistoryBucket
from .event import AUDIT, OUTCOME, STORED_RUN
from .trail import History, parse_time

# A person reading the dashboard waits for none of these; the writer retries on its own.
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 10


def history_for(process: str, location=None, client_env: Mapping[str, str] | None = None, client=None) -> History:
    """The History of this process: in the bucket under `location` (a StorageLocation) when there is one, in
    `_history/` on the remote for an RcloneLocation (`client_env`: its RCLONE_* variables), else in memory only."""
    from backup_svc.storage.rclone_target import RcloneLocation

    if location is None:
        return History(process)
    if isinstance(location, RcloneLocation):
        return remote_history(process, location, client_env or {})
    if client is None:
        from backup_svc.storage.client import ClientBeingMade, make_client

        # made at its first use (in a thread): nothing is written before the run ends, which need not wait for botocore
        client = ClientBeingMade(
            lambda: make_client(client_env or {}, connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S)
        )
    return History(process, HistoryBucket(client, location.bucket, location.prefix))


def remote_history(process: str, location, env: Mapping[str, str]) -> History:
    """The History of this process in `_history/` beside the backups on an rclone remote (`location`, an
    RcloneLocation; `env` holds its RCLONE_* settings), with the same short bounds as the bucket's."""
    from backup_svc.storage.rclone_target import RcloneTarget

    from .remote import HistoryRemote

    target = RcloneTarget(location, env, connect_timeout_s=CONNECT_TIMEOUT_S, stall_timeout_s=READ_TIMEOUT_S, retries=1)
    return History(process, HistoryRemote(target))


def audit_sink(history: History) -> Callable[[dict], None]:
    """For AuditTrail.sink: each audit entry becomes an audit event at the attempt's start time."""

    def sink(entry: dict) -> None:
        history.record(AUDIT, entry.get("event") or "backup", entry, parse_time(entry["time"]))

    return sink


def outcome_sink(history: History):
    """For Reporter.history: stored backups' outcomes, drills, delivery problems and staleness alarms."""

    def sink(type_: str, data: dict, when: datetime | None) -> None:
        history.record(OUTCOME, type_, data, when)

    return sink


def record_run(
    history: History,
    *,
    trigger: str,
    outcome: str,
    started: float,
    finished: float,
    name: str | None = None,
    error: str | None = None,
    backup_id: str | None = None,
) -> None:
    """One stored backup run as the dashboard's "last run" and "last failure" read it."""
    history.record(
        OUTCOME,
        STORED_RUN,
        {
            "trigger": trigger,
            "outcome": outcome,
            "started": iso_utc(started),
            "finished": iso_utc(finished),
            "name": name,
            "error": error,
            "id": backup_id,
        },
        # to the millisecond (the event's key has them): cut to the second, a good and a failed run of two
        # processes in one second tied, and their random run ids decided which was "the last scheduled run"
        datetime.fromtimestamp(finished, timezone.utc),
    )


# A command that exits next waits this long for its events to reach the bucket (they are logged either way),
# but only FAILING_S once the bucket has refused or timed out: a stalled bucket must not hold up a cron run.
EXIT_FLUSH_S = 15
FAILING_S = 3


def command_history(process: str, storage) -> History:
    """The History of a command (`upload`, `drill`, a shell restore): in the bucket when `storage`
    (StorageSettings) is configured, else memory only (nothing outlives the command then)."""
    return history_for(process, storage.location if storage else None, storage.client_env if storage else None)


def record_audit(
    history: History, *, event: str, started: float, outcome: str, actor: str, error: str | None = None, **facts
) -> None:
    """An audit entry of a command (no HTTP client: `client` is the host it ran on), shaped like the web's."""
    import socket
    import time

    entry = {
        "event": event,
        "time": iso_utc(started, "milliseconds"),
        "id": facts.pop("backup_id", None),
        "actor": actor,
        "client": socket.gethostname(),
        "user_agent": None,
        "outcome": outcome,
        "status": None,
        "bytes": facts.pop("gzip_bytes", 0),
        "sql_bytes": facts.pop("sql_bytes", 0),
        "duration_s": round(max(0.0, time.time() - started), 3),
        "error": error,
        "sha256": facts.pop("sha256", None),
        "name": facts.pop("name", None),
        **facts,
    }
    audit_sink(history)(entry)


def flush_before_exit(history: History, say: Callable[[str], None], timeout_s: float = EXIT_FLUSH_S) -> bool:
    """Wait for the history writer before the command exits; say what could not be written, and why."""
    if history.flush(timeout_s, failing_s=FAILING_S):
        return True
    status = history.writer.status()
    say(
        f"history: {status.pending} event(s) could not be written to {history.bucket.url} within {timeout_s:g} s "
        f"({status.last_error}); they are lost to the history (this command's output and log have them)"
    )
    return False
