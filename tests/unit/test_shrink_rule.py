"""The shrink alarm's rule (storage/shape.py), BACKUP_SHRINK_ALERT's parsing, and the warning's words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.notify.mail import body, subject
from backup_svc.notify.shrink import shrink_event
from backup_svc.storage.retention import HELD_REASON, apply_retention, parse_retention, with_holds
from backup_svc.storage.shape import BackupShape, detect_shrink, parse_shrink_alert, shrunk_tables

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)


def shape(day: int, rows: int | None, size: int = 10_000, per_table=None) -> BackupShape:
    return BackupShape(
        name=f"db_backup_202611{day + 1:02d}_030000.sql.gz",
        time=T0 + timedelta(days=day),
        size=size,
        rows=rows,
        per_table=per_table,
    )


@pytest.mark.parametrize(
    "text, expected",
    [("", 30.0), ("off", None), ("OFF", None), ("25", 25.0), ("12.5%", 12.5), ("99", 99.0), ("1", 1.0)],
)
def test_parse_shrink_alert(text, expected):
    assert parse_shrink_alert(text) == expected


@pytest.mark.parametrize("text", ["thirty", "0.5", "100", "-5", "30 percent"])
def test_parse_shrink_alert_refuses(text):
    with pytest.raises(ValueError, match="from 1 to 99 or 'off'"):
        parse_shrink_alert(text)


def test_a_steady_series_raises_nothing():
    series = [shape(d, 1000 + 7 * d) for d in range(10)]
    assert all(detect_shrink(series[i], series[:i], 30.0) is None for i in range(len(series)))


def test_a_drop_past_the_threshold_is_found_with_the_tables_that_shrank():
    before = {("public", "orders"): 600, ("public", "users"): 400, ("public", "notes"): 50}
    after = {("public", "orders"): 0, ("public", "users"): 390, ("public", "notes"): 50}
    earlier = [shape(d, r, per_table=before) for d, r in enumerate([1000, 1040, 1010, 1050, 1020, 1030, 1050])]
    new = shape(7, 440, per_table=after)

    finding = detect_shrink(new, earlier, 30.0)

    assert (finding.measure, finding.value, finding.median, finding.compared) == ("rows", 440, 1030.0, 7)
    assert finding.drop_percent == pytest.approx((1030 - 440) / 1030 * 100)
    assert finding.held == earlier[-1].name and finding.held_value == 1050
    assert [(t.table, t.before, t.after) for t in finding.tables] == [
        ("public.orders", 600, 0),
        ("public.users", 400, 390),
    ]


def test_a_drop_at_the_threshold_is_not_an_alarm_and_off_disables():
    earlier = [shape(d, 1000) for d in range(7)]
    assert detect_shrink(shape(7, 700), earlier, 30.0) is None  # exactly 30 % below: not "more than"
    assert detect_shrink(shape(7, 699), earlier, 30.0) is not None
    assert detect_shrink(shape(7, 1), earlier, None) is None


def test_only_the_seven_before_count_and_too_little_history_is_quiet():
    earlier = [shape(d, 10) for d in range(3)] + [shape(d, 1000) for d in range(3, 10)]
    assert detect_shrink(shape(10, 600), earlier, 30.0).median == 1000  # the 3 small ones are older than 7
    assert detect_shrink(shape(2, 1), [shape(0, 1000), shape(1, 1000)], 30.0) is None


def test_sizes_are_compared_where_rows_are_unknown():
    earlier = [shape(d, None, size=50_000) for d in range(7)]
    finding = detect_shrink(shape(7, None, size=20_000), earlier, 30.0)
    assert (finding.measure, finding.value, finding.tables) == ("size", 20_000, ())


def test_after_an_alarm_the_new_level_is_the_baseline():
    earlier = [shape(d, 1000) for d in range(7)] + [shape(7, 400)]
    alarm_time = earlier[-1].time
    assert detect_shrink(shape(8, 400), earlier, 30.0) is not None  # without the alarm's memory: again
    assert detect_shrink(shape(8, 400), earlier, 30.0, since=alarm_time) is None  # the same episode
    assert detect_shrink(shape(8, 100), earlier, 30.0, since=alarm_time).median == 400  # a new drop


def test_shrunk_tables_need_both_sides():
    assert shrunk_tables(None, {("a", "b"): 1}) == () and shrunk_tables({("a", "b"): 1}, None) == ()
    assert shrunk_tables({("a", "b"): 5}, {})[0].after == 0  # a table gone counts as emptied


@pytest.mark.parametrize("rules", ["last=2", "daily=2", "weekly=1", "monthly=1", "last=1,daily=1,weekly=1,monthly=1"])
def test_a_hold_outranks_every_retention_rule(rules):
    backups = [shape(d, 1000) for d in range(6)]  # 1-6 November 2026, one a day
    by_rules = {d.backup.name for d in apply_retention(backups, parse_retention(rules)) if d.keep}
    held = backups[1].name
    assert held not in by_rules and backups[5].name in by_rules  # the rules alone would delete it
    decisions = with_holds(apply_retention(backups, parse_retention(rules)), {held})
    kept = {d.backup.name: d.reasons for d in decisions if d.keep}
    assert set(kept) == by_rules | {held}
    assert kept[held] == (HELD_REASON,)


def test_the_warning_names_the_numbers_in_mail_and_webhook():
    before = {("public", "orders"): 600, ("public", "users"): 400}
    earlier = [shape(d, 1000, per_table=before) for d in range(7)]
    finding = detect_shrink(shape(7, 400, per_table={("public", "users"): 400}), earlier, 30.0)
    event = shrink_event(
        finding.as_json(),
        database="shop",
        size=1234,
        sha256="ab" * 32,
        rows=400,
        finished=T0 + timedelta(days=7, minutes=1),
        held_url="s3://b/p/" + finding.held,
    )

    payload = event.payload()
    assert (payload["event"], payload["outcome"], payload["name"]) == ("shrink", "warning", finding.name)
    assert payload["details"]["shrunk_tables"] == [{"table": "public.orders", "before": 600, "after": 0}]
    assert "60.0 % fewer rows" in payload["text"] and "public.orders 600 → 0" in payload["text"]
    assert "[backup_svc] shop: backup SHRANK (warning) at 2026-11-08 03:01 UTC" == subject(event)
    text = body(event)
    assert "holds 400 rows: 60.0 % below the median of the 7 backups before it (1,000 rows)" in text.replace("\n", " ")
    assert f"Held:      {finding.held}" in text


def sample_event():
    """The warning docs/notifications.md shows: a week of backups of `shop`, then two tables emptied."""
    t0 = datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc)
    tables = {
        ("public", "orders"): 48_210,
        ("public", "order_items"): 131_877,
        ("public", "customers"): 9_412,
        ("public", "sessions"): 2_305,
    }
    earlier = []
    for day, extra in enumerate([0, 212, 431, 598, 804, 1_020, 1_187]):
        counts = dict(tables)
        counts[("public", "orders")] += extra
        earlier.append(
            BackupShape(
                name=f"shop_backup_202611{21 + day:02d}_030000.sql.gz",
                time=t0 + timedelta(days=day),
                size=3_468_771 + extra * 40,
                rows=sum(counts.values()),
                per_table=counts,
            )
        )
    after = {
        ("public", "orders"): 0,
        ("public", "order_items"): 0,
        ("public", "customers"): 9_430,
        ("public", "sessions"): 2_117,
    }
    new = BackupShape(
        name="shop_backup_20261128_030000.sql.gz",
        time=t0 + timedelta(days=7),
        size=412_006,
        rows=sum(after.values()),
        per_table=after,
    )
    finding = detect_shrink(new, earlier, 30.0)
    return shrink_event(
        finding.as_json(),
        database="shop",
        size=new.size,
        sha256="5be0f62fb3f0c6c94b1c3b2c5d7c1e0a9e4f1c0b8a7d6e5f4a3b2c1d0e9f8a7b",
        rows=new.rows,
        finished=datetime(2026, 11, 28, 3, 0, 41, tzinfo=timezone.utc),
        held_url="s3://my-backups/postgres/" + finding.held,
    )


def test_the_docs_sample_shrink_warning_is_what_is_sent():
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    event = sample_event()
    mail = re.search(r"The warning mail, as sent.*?```\n(.*?)```", text, re.S).group(1)
    headers, sent_body = mail.split("\n\n", 1)
    assert headers == f"Subject: {subject(event)}"
    assert sent_body == body(event)
    hook = re.search(r"and its webhook body.*?```json\n(.*?)```", text, re.S).group(1)
    assert json.loads(hook) == event.payload()
