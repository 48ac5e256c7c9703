"""Which stored backups to keep: restic's `forget --keep-*` rules, as a pure function.

`BACKUP_RETENTION=last=N,daily=N,weekly=N,monthly=N` (any subset). Walking the backups newest first,
`last` keeps the N newest; `daily` keeps the newest backup of each of the N most recent days that
have a backup (likewise ISO weeks and months). A backup is kept when any rule keeps it, and one
backup may count for several rules at once (the newest is at once the last, the day's, the week's
and the month's). Like restic, a rule that still has counts left when it reaches the oldest backup
keeps that one too (it lengthens the history kept). Times come from the names, in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol, Sequence

RULES = ("last", "daily", "weekly", "monthly")
_MAX_KEEP = 100_000

_BUCKETS: dict[str, Callable[[datetime], str]] = {
    "daily": lambda t: f"{t:%Y-%m-%d}",
    "weekly": lambda t: "{0}-W{1:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: f"{t:%Y-%m}",
}


class Dated(Protocol):
    name: str
    time: datetime


@dataclass(frozen=True)
class RetentionPolicy:
    """How many backups each rule keeps; None = rule not used."""

    last: int | None = None
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None

    def __str__(self) -> str:
        return ",".join(f"{rule}={getattr(self, rule)}" for rule in RULES if getattr(self, rule) is not None)


def parse_retention(text: str) -> RetentionPolicy | None:
    """`last=7,daily=14,weekly=8,monthly=12` (any subset) → a policy; "" → None (keep everything).

    ValueError says what is wrong: unknown or repeated rules, counts that are not whole numbers ≥ 1.
    """
    text = text.strip()
    if not text:
        return None
    counts: dict[str, int] = {}
    for item in text.split(","):
        rule, sep, value = (part.strip() for part in item.partition("="))
        if rule not in RULES or not sep:
            raise ValueError(
                f"has {item.strip()!r}; expected rule=N with rule one of {', '.join(RULES)} "
                f"(e.g. last=7,daily=14,weekly=8,monthly=12)"
            )
        if rule in counts:
            raise ValueError(f"names {rule} twice")
        if not value.isdigit() or not 1 <= int(value) <= _MAX_KEEP:
            raise ValueError(f"needs a whole number from 1 to {_MAX_KEEP} for {rule}, got {value!r}")
        counts[rule] = int(value)
    return RetentionPolicy(**counts)


@dataclass(frozen=True)
class Decision:
    """Whether one backup stays, and why: e.g. ("last 1", "daily 2026-11-28", "weekly 2026-W48")."""

    backup: Dated
    keep: bool
    reasons: tuple[str, ...]


def apply_retention(backups: Sequence[Dated], policy: RetentionPolicy) -> list[Decision]:
    """Decide for each backup (any order in; newest first out) whether `policy` keeps it, as restic does."""
    ordered = sorted(backups, key=lambda b: b.time, reverse=True)
    remaining = {rule: getattr(policy, rule) for rule in RULES if getattr(policy, rule) is not None}
    last_seen: dict[str, str | None] = {rule: None for rule in remaining}
    decisions = []
    for position, backup in enumerate(ordered, start=1):
        reasons = []
        for rule, left in remaining.items():
            if left <= 0:
                continue
            period = f"#{position}" if rule == "last" else _BUCKETS[rule](backup.time)
            oldest = position == len(ordered)
            if period != last_seen[rule] or oldest:
                reasons.append(f"{rule} {period}" if period != last_seen[rule] else f"{rule} (oldest, {left} left)")
                last_seen[rule] = period
                remaining[rule] = left - 1
        decisions.append(Decision(backup=backup, keep=bool(reasons), reasons=tuple(reasons)))
    return decisions


HELD_REASON = "held: the last backup before a shrink alarm, until acknowledged"


def with_holds(decisions: list[Decision], held: set[str]) -> list[Decision]:
    """`decisions` with every backup named in `held` kept (a retention hold outranks every rule)."""
    return [Decision(d.backup, True, (*d.reasons, HELD_REASON)) if d.backup.name in held else d for d in decisions]


def removal_reason(policy: RetentionPolicy) -> str:
    """Why a backup that no rule kept goes, in words."""
    return f"kept by no rule of {policy}"
