"""Retention with restic's meaning: parsing BACKUP_RETENTION and choosing what to keep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_svc.storage.retention import RetentionPolicy, apply_retention, parse_retention


@dataclass(frozen=True)
class B:
    name: str
    time: datetime


def at(text: str) -> B:
    return B(text, datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc))


def kept(backups, policy) -> list[str]:
    return [d.backup.name for d in apply_retention(backups, policy) if d.keep]


@pytest.mark.parametrize(
    "text, policy",
    [
        ("", None),
        ("  ", None),
        ("last=7", RetentionPolicy(last=7)),
        ("daily=7, weekly=4,monthly=12", RetentionPolicy(daily=7, weekly=4, monthly=12)),
        ("monthly=1,last=2", RetentionPolicy(last=2, monthly=1)),
    ],
)
def test_parse(text, policy):
    assert parse_retention(text) == policy


@pytest.mark.parametrize(
    "text, message",
    [
        ("yearly=1", "expected rule=N"),
        ("last", "expected rule=N"),
        ("last=0", "whole number from 1"),
        ("last=-1", "whole number from 1"),
        ("last=x", "whole number from 1"),
        ("daily=7,daily=3", "names daily twice"),
        ("last=7,", "expected rule=N"),
    ],
)
def test_parse_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_retention(text)


def test_daily_keeps_the_newest_of_each_day_that_has_backups():
    backups = [
        at("2026-11-28 15:00"),
        at("2026-11-28 03:00"),
        at("2026-11-25 03:00"),
        at("2026-11-24 22:00"),
        at("2026-11-24 03:00"),
        at("2026-11-20 03:00"),
    ]
    # Days without backups (26, 27) do not count; the 3rd day with backups is the 24th, its newest 22:00.
    assert kept(backups, RetentionPolicy(daily=3)) == ["2026-11-28 15:00", "2026-11-25 03:00", "2026-11-24 22:00"]


def test_weeks_are_iso_weeks():
    # 2027-01-01 (Fri) and 2026-12-28 (Mon) are both in ISO week 2026-W53; 2026-12-27 (Sun) is W52.
    backups = [at("2027-01-01 03:00"), at("2026-12-28 03:00"), at("2026-12-27 03:00"), at("2026-12-21 03:00")]
    decisions = apply_retention(backups, RetentionPolicy(weekly=2))
    assert [(d.backup.name, d.reasons) for d in decisions if d.keep] == [
        ("2027-01-01 03:00", ("weekly 2026-W53",)),
        ("2026-12-27 03:00", ("weekly 2026-W52",)),
    ]


def test_rules_combine_as_a_union_and_one_backup_counts_for_several():
    backups = [at(f"2026-11-{d:02d} 03:00") for d in range(28, 0, -1)] + [at("2026-10-31 03:00")]
    decisions = apply_retention(backups, RetentionPolicy(last=2, monthly=2))
    assert [(d.backup.name, d.reasons) for d in decisions if d.keep] == [
        ("2026-11-28 03:00", ("last #1", "monthly 2026-11")),
        ("2026-11-27 03:00", ("last #2",)),
        ("2026-10-31 03:00", ("monthly 2026-10",)),
    ]


def test_a_rule_with_counts_left_keeps_the_oldest_too_as_restic_does():
    backups = [at("2026-11-28 03:00"), at("2026-11-27 03:00"), at("2026-11-27 01:00")]
    assert kept(backups, RetentionPolicy(daily=5)) == ["2026-11-28 03:00", "2026-11-27 03:00", "2026-11-27 01:00"]
    assert kept(backups, RetentionPolicy(daily=2)) == ["2026-11-28 03:00", "2026-11-27 03:00"]


def test_input_order_does_not_matter_and_output_is_newest_first():
    backups = [at("2026-11-20 03:00"), at("2026-11-28 03:00"), at("2026-11-24 03:00")]
    assert [d.backup.name for d in apply_retention(backups, RetentionPolicy(last=1))] == [
        "2026-11-28 03:00",
        "2026-11-24 03:00",
        "2026-11-20 03:00",
    ]


def reference_keep(backups, policy) -> set[str]:
    """The rules as the issue states them, written independently: group, take the N most recent
    groups, the newest of each; plus restic's "oldest while counts are left"."""
    ordered = sorted(backups, key=lambda b: b.time, reverse=True)
    keep = {b.name for b in ordered[: policy.last or 0]}
    for count, period in (
        (policy.daily, lambda t: t.date()),
        (policy.weekly, lambda t: t.isocalendar()[:2]),
        (policy.monthly, lambda t: (t.year, t.month)),
    ):
        if not count:
            continue
        groups: dict = {}
        for b in ordered:
            groups.setdefault(period(b.time), b)  # the first seen is the newest of its group
        chosen = list(groups.values())[:count]
        keep |= {b.name for b in chosen}
        if len(groups) < count and ordered:
            keep.add(ordered[-1].name)  # counts left at the oldest backup
    return keep


times = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1)).map(
    lambda t: t.replace(second=0, microsecond=0, tzinfo=timezone.utc)
)
counts = st.one_of(st.none(), st.integers(1, 12))


@settings(max_examples=300, deadline=None)
@given(st.lists(times, unique=True, max_size=60), counts, counts, counts, counts)
def test_matches_an_independent_reading_of_the_rules_and_never_drops_the_newest(stamps, last, daily, weekly, monthly):
    policy = RetentionPolicy(last=last, daily=daily, weekly=weekly, monthly=monthly)
    backups = [B(f"{t:%Y%m%d_%H%M%S}", t) for t in stamps]
    got = set(kept(backups, policy))
    if str(policy):
        assert got == reference_keep(backups, policy)
        if backups:
            assert max(backups, key=lambda b: b.time).name in got
    else:
        assert got == set()  # no rule at all: callers treat None as "keep everything" and never prune
