"""Stored backups in words and the rules behind the dashboard's warnings (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.storage.location import BackupNames
from backup_svc.storage.presign import NotOurBackup, checked_name
from backup_svc.storage.retention import parse_retention
from backup_svc.storage.schedule import CronSchedule
from backup_svc.storage.status import duration_words, freshness, next_run_words, retention_words, schedule_interval
from backup_svc.web.security import state_change_refusal

NOW = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)  # a Monday
DAILY = CronSchedule("0 3 * * *")


@pytest.mark.parametrize(
    "seconds, words",
    [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (5 * 3600 + 20 * 60, "5 h 20 min"),
        (12 * 3600 + 5 * 60, "12 h"),
        (86400, "1 day"),
        (2 * 86400 + 5 * 3600, "2 days 5 h"),
        (9 * 86400 + 3600, "9 days"),
    ],
)
def test_durations_read_as_people_say_them(seconds, words):
    assert duration_words(seconds) == words


def test_next_run_says_when_and_how_long_until():
    assert next_run_words(datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc), NOW) == "next: 23:00 UTC, in 1 h"
    assert next_run_words(DAILY.next_after(NOW), NOW) == "next: Tue 01 Dec 03:00 UTC, in 5 h"


def test_the_interval_is_the_gap_that_ends_at_the_latest_scheduled_time():
    assert schedule_interval(DAILY, NOW) == timedelta(days=1)
    weekdays = CronSchedule("0 3 * * 1-5")
    assert schedule_interval(weekdays, NOW) == timedelta(days=3)  # Monday's run follows Friday's
    assert schedule_interval(weekdays, NOW + timedelta(days=1)) == timedelta(days=1)
    assert schedule_interval(CronSchedule("*/5 * * * *"), NOW) == timedelta(minutes=5)


@pytest.mark.parametrize("age_h, stale", [(1, False), (35.9, False), (36.1, True), (80, True)])
def test_overdue_means_older_than_one_and_a_half_intervals(age_h, stale):
    fresh = freshness(NOW - timedelta(hours=age_h), NOW, DAILY, False)
    assert fresh.stale is stale
    assert fresh.age_s == age_h * 3600
    if stale:
        assert fresh.warning.startswith(
            f"The newest backup is {duration_words(age_h * 3600)} old, but the schedule runs every 1 day"
        )


def test_a_failed_scheduled_run_warns_even_when_the_newest_backup_is_recent():
    fresh = freshness(NOW - timedelta(hours=1), NOW, DAILY, True)
    assert fresh.warning == "The last scheduled backup failed."


def test_without_a_schedule_nothing_is_overdue():
    assert not freshness(NOW - timedelta(days=400), NOW, None, False).stale
    assert not freshness(None, NOW, None, False).stale


def test_no_backup_at_all_warns_only_once_the_schedule_should_have_made_one():
    assert not freshness(None, NOW, DAILY, False, up_since=NOW - timedelta(hours=20)).stale
    assert (
        freshness(None, NOW, DAILY, False, up_since=NOW - timedelta(hours=40)).warning
        == "There is no stored backup yet, although the schedule should have made one."
    )


def test_retention_in_words():
    assert retention_words(None).startswith("Every stored backup is kept")
    assert retention_words(parse_retention("last=7,daily=14,weekly=8,monthly=12")) == (
        "After each successful stored backup, older ones are deleted except the 7 newest and the newest of each "
        "of the last 14 days, 8 weeks and 12 months that have a backup (last=7,daily=14,weekly=8,monthly=12)."
    )
    assert retention_words(parse_retention("daily=1")) == (
        "After each successful stored backup, older ones are deleted except the newest of each of the last "
        "1 day that have a backup (daily=1)."
    )


@pytest.mark.parametrize(
    "name",
    [
        "shop_backup_20261128_030000.sql.gz",
    ],
)
def test_this_services_names_may_be_presigned(name):
    assert checked_name(BackupNames("shop"), name) == name


@pytest.mark.parametrize(
    "name",
    [
        "other_backup_20261128_030000.sql.gz",
        "shop_backup_20261128_030000.sql",
        "shop_backup_20261340_030000.sql.gz",
        "../shop_backup_20261128_030000.sql.gz",
        "x/shop_backup_20261128_030000.sql.gz",
        "shop_backup_20261128_030000.sql.gz/",
        "",
        "shop_backup_20261128_0300001.sql.gz",
    ],
)
def test_no_other_name_may_be_presigned(name):
    with pytest.raises(NotOurBackup):
        checked_name(BackupNames("shop"), name)


@pytest.mark.parametrize(
    "headers, refused",
    [
        ({}, False),  # curl, scripts
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://svc.example:8080"}, False),
        ({"Origin": "http://SVC.example:8080"}, False),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Origin": "http://svc.example:8081"}, True),
        ({"Origin": "https://evil.example"}, True),
        ({"Origin": "null"}, True),
        # The whole origin, as for every state-changing request: scheme, host and port (issue 22: only
        # host:port was compared here, while cancel compared the scheme too).
        ({"Origin": "https://svc.example:8080"}, True),
        ({"Origin": "http://svc.example:8080/api"}, True),
        ({"Origin": "http://svc.example.evil:8080"}, True),
        ({"Origin": "http://svc.example:8080/"}, False),
        # Fetch Metadata is the browser's own comparison; Origin is what is left without it. (A browser
        # cannot send same-origin with another host's Origin; a script can send anything and is judged
        # by its credentials.)
        ({"Sec-Fetch-Site": "same-origin", "Origin": "https://the.public.domain"}, False),
    ],
)
def test_changes_come_only_from_the_services_own_pages(headers, refused):
    """One rule for every state-changing request (POST /api/v1/stored, DELETE cancel, restores…)."""
    assert (state_change_refusal("POST", headers, "http://svc.example:8080/") is not None) is refused
    assert (state_change_refusal("DELETE", headers, "http://svc.example:8080/") is not None) is refused
    assert state_change_refusal("GET", headers, "http://svc.example:8080/") is None  # reads follow the cross-site rule
