"""Retention holds: after a shrink alarm, the last backup before the drop is kept until an admin says so.

Each alarm is one small JSON object, `<prefix>_holds/<held backup name>.json` (the finding,
shape.ShrinkFinding); acknowledging it adds `<held backup name>.acknowledged.json` (who, when).
Nothing is overwritten or deleted, so the folder is also the record of every alarm. They live in the
bucket, beside the backups, so every process that applies retention — `serve`'s scheduler, a cron
`upload`, `prune` — sees them, and they survive restarts. Their names are never a backup's name, so
retention never counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .client import RetryPolicy, StorageError, error_code, with_retries
from .location import StorageLocation
from .shape import ShrinkFinding

HOLDS_FOLDER = "_holds/"
ACKNOWLEDGED = ".acknowledged.json"
# A hold is a few hundred bytes; anything much bigger under the folder is not one of ours.
MAX_HOLD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Hold:
    """One shrink alarm: the backup it holds, why (the finding), since when, and its acknowledgement."""

    held: str
    finding: ShrinkFinding
    created: datetime
    acknowledged: dict | None = None  # {"by": …, "at": …} once an admin acknowledged it

    @property
    def active(self) -> bool:
        return self.acknowledged is None

    def as_json(self) -> dict:
        return {
            "held": self.held,
            "created": _iso(self.created),
            "finding": self.finding.as_json(),
            "acknowledged": self.acknowledged,
        }


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def hold_key(location: StorageLocation, held: str) -> str:
    return f"{location.prefix}{HOLDS_FOLDER}{held}.json"


def place_hold(
    client,
    location: StorageLocation,
    finding: ShrinkFinding,
    *,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Hold:
    """Record the alarm and its hold on `finding.held`; StorageError when it cannot be written."""
    hold = Hold(held=finding.held, finding=finding, created=now or datetime.now(timezone.utc))
    body = json.dumps({k: v for k, v in hold.as_json().items() if k != "acknowledged"}, indent=1).encode()
    key = hold_key(location, finding.held)
    with_retries(
        f"recording the retention hold {key}",
        lambda: client.put_object(Bucket=location.bucket, Key=key, Body=body, ContentType="application/json"),
        retry,
    )
    return hold


def read_holds(client, location: StorageLocation, *, retry: RetryPolicy = RetryPolicy()) -> list[Hold]:
    """The unacknowledged alarms, and the latest alarm even when acknowledged, newest first.

    StorageError when they cannot be read: the caller must then delete nothing (a hold it could not
    see may protect the backup it would delete).
    """
    folder = location.prefix + HOLDS_FOLDER
    names: set[str] = set()
    request = {"Bucket": location.bucket, "Prefix": folder}
    while True:
        page = with_retries(
            f"listing the retention holds in {location.url}", lambda: client.list_objects_v2(**request), retry
        )
        names.update(
            item["Key"][len(folder) :]
            for item in page.get("Contents", [])
            if "/" not in item["Key"][len(folder) :] and item.get("Size", 0) <= MAX_HOLD_BYTES
        )
        if not page.get("IsTruncated"):
            break
        request["ContinuationToken"] = page["NextContinuationToken"]
    alarms = sorted(
        (n[: -len(".json")] for n in names if n.endswith(".json") and not n.endswith(ACKNOWLEDGED)), reverse=True
    )  # held names carry their UTC time: newest first
    holds = []
    for i, held in enumerate(alarms):
        acknowledged = held + ACKNOWLEDGED in names
        if acknowledged and i > 0:
            continue  # an old, settled alarm: nothing reads it
        hold = _read_hold(client, location, folder + held + ".json", retry)
        if hold is not None and acknowledged:
            ack = _get_json(client, location, folder + held + ACKNOWLEDGED, retry) or {}
            hold = Hold(hold.held, hold.finding, hold.created, acknowledged={"by": ack.get("by"), "at": ack.get("at")})
        if hold is not None:
            holds.append(hold)
    return holds


def active_holds(holds: list[Hold]) -> set[str]:
    """The names of the backups retention must keep."""
    return {h.held for h in holds if h.active}


def _get_json(client, location: StorageLocation, key: str, retry: RetryPolicy) -> dict | None:
    def get():
        try:
            return client.get_object(Bucket=location.bucket, Key=key)["Body"].read(MAX_HOLD_BYTES)
        except Exception as exc:
            if error_code(exc)[1] == 404:
                return None
            raise

    body = with_retries(f"reading {key}", get, retry)
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        raise StorageError(f"{key} is not valid JSON; delete it by hand if it is not this service's") from None
    if not isinstance(data, dict):
        raise StorageError(f"{key} does not hold a JSON object")
    return data


def _read_hold(client, location: StorageLocation, key: str, retry: RetryPolicy) -> Hold | None:
    data = _get_json(client, location, key, retry)
    if data is None:
        return None
    try:
        created = datetime.fromisoformat(data["created"].replace("Z", "+00:00"))
        return Hold(held=data["held"], finding=ShrinkFinding.from_json(data["finding"]), created=created)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # Unreadable, but someone meant to hold a backup: refuse to decide rather than drop the guard.
        raise StorageError(
            f"the retention hold {key} cannot be read ({type(exc).__name__}); delete it by hand "
            f"if that backup need not be kept"
        ) from None


def acknowledge_hold(
    client,
    location: StorageLocation,
    held: str,
    by: str,
    *,
    now: datetime | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> bool:
    """Mark the alarm holding `held` acknowledged, which ends the hold; False when no such alarm is open."""
    key = hold_key(location, held)
    ack_key = key[: -len(".json")] + ACKNOWLEDGED

    def exists(k: str) -> bool:
        try:
            client.head_object(Bucket=location.bucket, Key=k)
            return True
        except Exception as exc:
            if error_code(exc)[1] == 404:
                return False
            raise

    if not with_retries(f"looking up the retention hold {key}", lambda: exists(key), retry) or with_retries(
        f"looking up {ack_key}", lambda: exists(ack_key), retry
    ):
        return False
    body = json.dumps({"held": held, "by": by, "at": _iso(now or datetime.now(timezone.utc))}).encode()
    with_retries(
        f"acknowledging the retention hold {key}",
        lambda: client.put_object(Bucket=location.bucket, Key=ack_key, Body=body, ContentType="application/json"),
        retry,
    )
    return True
