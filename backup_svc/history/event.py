"""One history event: a small JSON object, its bytes, its hash, its key in the bucket, and the hash chain
that links the events one process run writes.

An event is written once and never changed: its key holds its time, the process run that wrote it, its
number in that run and the start of its own SHA-256, so a retried write lands on the same key (nothing
is duplicated) and an edited body no longer matches its name. Each event also carries the hash of the
event written before it by the same run (`prev`): a missing or altered event breaks the chain, which
`history --check` reports. That is evidence of tampering, not protection: whoever holds the bucket's
credentials can rewrite a whole run consistently.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

FOLDER = "_history/"
VERSION = 1
# Kinds: an audit entry (who did what, from where) or an outcome (a stored backup, a drill, a
# notification that could not be delivered, a staleness alarm).
AUDIT, OUTCOME = "audit", "outcome"
# The outcome type of one stored backup run, and the trigger of one run by the `upload` command (a cron service).
STORED_RUN = "stored-run"
UPLOAD_TRIGGER = "upload command"
_STAMP = "%Y%m%dT%H%M%S"
# <YYYY>/<MM>/<DD>/<YYYYMMDDTHHMMSS><mmm>Z-<run>-<seq>-<hash16>.json
_KEY = re.compile(r"(\d{4})/(\d{2})/(\d{2})/(\d{8}T\d{6})(\d{3})Z-([0-9a-f]{12})-(\d{6,})-([0-9a-f]{16})\.json")


def history_prefix(prefix: str) -> str:
    """Where the history lives under a storage prefix ("" or ending in "/"): `<prefix>_history/`."""
    return prefix + FOLDER


def canonical(body: dict) -> bytes:
    """The bytes an event is stored as (and hashed over): sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class HistoryEvent:
    """An event as written: its body (a dict), the stored bytes, their SHA-256 and its key under the history prefix."""

    body: dict
    data: bytes
    sha256: str
    name: str  # the key below `<prefix>_history/`

    @property
    def time(self) -> str:
        return self.body["time"]

    @property
    def type(self) -> str:
        return self.body["type"]

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> "HistoryEvent":
        """Read a stored event (ValueError when it is no JSON object)."""
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return cls(body=body, data=data, sha256=digest(data), name=name)


@dataclass(frozen=True)
class KeyFacts:
    """What an event's key says: its time, the run that wrote it, its number in that run, its hash's start."""

    time: datetime
    run: str
    seq: int
    hash16: str


def parse_name(name: str) -> KeyFacts | None:
    """The facts in a key below the history prefix; None for anything that is not an event's key."""
    match = _KEY.fullmatch(name)
    if match is None:
        return None
    year, month, day, stamp, millis, run, seq, hash16 = match.groups()
    try:
        when = datetime.strptime(stamp, _STAMP).replace(tzinfo=timezone.utc, microsecond=int(millis) * 1000)
    except ValueError:
        return None
    if (year, month, day) != (stamp[:4], stamp[4:6], stamp[6:8]):
        return None
    return KeyFacts(time=when, run=run, seq=int(seq), hash16=hash16)


def day_folder(when: datetime) -> str:
    """`YYYY/MM/DD/` of a UTC time."""
    return f"{when:%Y/%m/%d}/"


class RunChain:
    """The events of one process run, numbered and chained: `make` is thread-safe and never touches the network."""

    def __init__(self, process: str, *, run: str | None = None):
        self.process = process
        self.run = run or secrets.token_hex(6)
        self._seq = 0
        self._prev: str | None = None
        self._lock = threading.Lock()

    def make(self, kind: str, type_: str, data: dict, when: datetime) -> HistoryEvent:
        """The next event of this run: `type_` (e.g. "backup", "drill") with its `data`, at `when` (UTC)."""
        when = when.astimezone(timezone.utc)
        with self._lock:
            body = {
                "v": VERSION,
                "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "process": self.process,
                "run": self.run,
                "seq": self._seq,
                "prev": self._prev,
                "kind": kind,
                "type": type_,
                "data": data,
            }
            data_bytes = canonical(body)
            sha = digest(data_bytes)
            name = (
                f"{day_folder(when)}{when:{_STAMP}}{when.microsecond // 1000:03d}Z-{self.run}-"
                f"{self._seq:06d}-{sha[:16]}.json"
            )
            self._seq += 1
            self._prev = sha
        return HistoryEvent(body=body, data=data_bytes, sha256=sha, name=name)
