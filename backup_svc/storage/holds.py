"""Retention holds: after a shrink alarm, the last backup before the drop is kept until an admin says so.

A hold is one small JSON object, `<prefix>_holds/<held backup name>.json`, holding the finding
(shape.ShrinkFinding). It lives in the bucket, beside the backups, so every process that applies
retention — `serve`'s scheduler, a cron `upload`, `prune` — sees it, and it survives restarts.
Acknowledging deletes it. Hold objects are never named like a backup, so retention never counts them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .client import RetryPolicy, StorageError, error_code, with_retries
from .location import StorageLocation
from .shape import ShrinkFinding

HOLDS_FOLDER = "_holds/"
# A hold is a few hundred bytes; anything much bigger under the folder is not one of ours.
MAX_HOLD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Hold:
    """One retention hold: the backup kept, why (the finding), and since when."""

    held: str
    finding: ShrinkFinding
    created: datetime

    def as_json(self) -> dict:
        return {"held": self.held, "created": self.created.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "finding": self.finding.as_json()}


def hold_key(location: StorageLocation, held: str) -> str:
    return f"{location.prefix}{HOLDS_FOLDER}{held}.json"


def place_hold(client, location: StorageLocation, finding: ShrinkFinding, *, now: datetime | None = None,
               retry: RetryPolicy = RetryPolicy()) -> Hold:
    """Record a hold on `finding.held`; StorageError when it cannot be written."""
    hold = Hold(held=finding.held, finding=finding, created=now or datetime.now(timezone.utc))
    body = json.dumps(hold.as_json(), indent=1).encode()
    key = hold_key(location, finding.held)
    with_retries(f"recording the retention hold {key}", lambda: client.put_object(
        Bucket=location.bucket, Key=key, Body=body, ContentType="application/json"), retry)
    return hold


def list_holds(client, location: StorageLocation, *, retry: RetryPolicy = RetryPolicy()) -> list[Hold]:
    """Every hold under the prefix, newest first; StorageError when they cannot be read (then the caller
    must not delete anything: a hold it could not see may protect the backup it would delete)."""
    folder = location.prefix + HOLDS_FOLDER
    page = with_retries(f"listing the retention holds in {location.url}",
                        lambda: client.list_objects_v2(Bucket=location.bucket, Prefix=folder), retry)
    holds = []
    for item in page.get("Contents", []):
        key = item["Key"]
        if not key.endswith(".json") or "/" in key[len(folder):] or item.get("Size", 0) > MAX_HOLD_BYTES:
            continue
        hold = _read_hold(client, location, key, retry)
        if hold is not None:
            holds.append(hold)
    holds.sort(key=lambda h: h.created, reverse=True)
    return holds


def _read_hold(client, location: StorageLocation, key: str, retry: RetryPolicy) -> Hold | None:
    def get():
        try:
            return client.get_object(Bucket=location.bucket, Key=key)["Body"].read(MAX_HOLD_BYTES)
        except Exception as exc:
            if error_code(exc)[1] == 404:  # acknowledged meanwhile
                return None
            raise

    body = with_retries(f"reading the retention hold {key}", get, retry)
    if body is None:
        return None
    try:
        data = json.loads(body)
        created = datetime.fromisoformat(data["created"].replace("Z", "+00:00"))
        return Hold(held=data["held"], finding=ShrinkFinding.from_json(data["finding"]), created=created)
    except (ValueError, KeyError, TypeError) as exc:
        # Unreadable, but someone meant to hold a backup: keep its name held rather than drop the guard.
        held = key.rsplit("/", 1)[-1][:-len(".json")]
        raise StorageError(f"the retention hold {key} cannot be read ({type(exc).__name__}); delete it by hand "
                           f"if {held} need not be kept") from None


def release_hold(client, location: StorageLocation, held: str, *, retry: RetryPolicy = RetryPolicy()) -> bool:
    """Delete the hold on `held` (an admin acknowledged the alarm); False when there was none."""
    key = hold_key(location, held)

    def exists() -> bool:
        try:
            client.head_object(Bucket=location.bucket, Key=key)
            return True
        except Exception as exc:
            if error_code(exc)[1] == 404:
                return False
            raise

    if not with_retries(f"looking up the retention hold {key}", exists, retry):
        return False
    with_retries(f"releasing the retention hold {key}",
                 lambda: client.delete_object(Bucket=location.bucket, Key=key), retry)
    return True
