"""Restore's pure parts: settings, names, progress, and how a restore reads in a notification."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from backup_svc.config import ConfigError, Settings
from backup_svc.notify.common import FAILED, OK, RESTORE, Event
from backup_svc.notify.delivery import Notifier
from backup_svc.notify.mail import subject
from backup_svc.notify.settings import NotifySettings
from backup_svc.restoring.names import BadName, check_new_name, kept_name, parse_kept
from backup_svc.restoring.progress import Cancelled, RestoreProgress

BASE = {"DATABASE_URL": "postgresql://u@h/shop", "ADMIN_PASSWORD": "p" * 20}
WHEN = datetime(2026, 12, 4, 22, 15, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "env,problem",
    [
        ({"RESTORE_TOKEN": "short"}, "RESTORE_TOKEN must be at least 16 characters"),
        ({"RESTORE_TOKEN": "x" * 20, "ADMIN_TOKEN": "x" * 20}, "RESTORE_TOKEN must differ from ADMIN_TOKEN"),
        ({"RESTORE_SWAP_TIMEOUT": "0"}, "RESTORE_SWAP_TIMEOUT must be between 1 and 600"),
        ({"RESTORE_SWAP_TIMEOUT": "soon"}, "RESTORE_SWAP_TIMEOUT must be a whole number"),
        ({"RESTORE_JOBS": "0"}, "RESTORE_JOBS must be between 1 and 64"),
    ],
)
def test_bad_restore_settings_refuse_to_start_without_echoing_the_token(env, problem):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**BASE, **env})
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems
    assert "x" * 20 not in str(refused.value.problems)


def test_restore_settings_defaults():
    settings = Settings.from_env(BASE)
    assert settings.restore.token is None and settings.restore.swap_timeout_s == 30
    assert settings.restore.jobs == 2 and Settings.from_env({**BASE, "RESTORE_JOBS": "8"}).restore.jobs == 8


def test_kept_names_follow_the_contract_and_parse_back():
    assert kept_name("shop", "restored", WHEN) == "shop_restored_20261204_221500"
    assert kept_name("shop", "before_restore", WHEN) == "shop_before_restore_20261204_221500"
    parsed = parse_kept("shop", "shop_before_restore_20261204_221500")
    assert parsed.kind == "before_restore" and parsed.time == WHEN
    assert parse_kept("shop", "shopping_restored_20261204_221500") is None
    assert parse_kept("shop", "shop_restored_20261304_221500") is None  # month 13
    assert parse_kept("shop", "shop") is None


def test_a_name_past_63_bytes_is_refused_not_cut():
    with pytest.raises(BadName, match="63 bytes"):
        kept_name("d" * 40, "before_restore", WHEN)


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "shop", "postgres", "template1", "é" * 40, 'x"; DROP'])
def test_typed_names_that_are_not_new_plain_identifiers_are_refused(name):
    with pytest.raises(BadName):
        check_new_name(name, "shop")


def test_progress_cancels_before_the_swap_only():
    progress = RestoreProgress(id="x", backup="b", mode="replace", database="shop", target="t", actor="admin")
    progress.enter("restoring")
    progress.bytes_total, progress.bytes_applied = 1000, 500
    assert 31 < progress.as_json()["percent"] < 95
    progress.cancel_requested.set()
    with pytest.raises(Cancelled):
        progress.check_cancel()
    progress.enter("swapping")  # a cancel that came too late does not stop the swap
    progress.check_cancel()
    assert not progress.cancellable()


def test_a_restore_is_news_even_when_notify_on_is_failure():
    notifier = Notifier(NotifySettings(webhook_url="http://127.0.0.1:9/hook", notify_on="failure"))
    event = Event(
        kind=RESTORE,
        outcome=OK,
        database="shop",
        name="shop_backup_20261204_020000.sql.gz",
        finished=WHEN,
        details={"action": "restore", "summary": "shop_backup_… was restored."},
    )
    assert [name for name, _, _ in notifier.channels(event)] == ["webhook"]
    assert event.headline() == "Restore of shop done at 2026-12-04 22:15 UTC"
    assert "was restored" in event.text()
    assert subject(event) == "[backup_svc] shop: restore ok at 2026-12-04 22:15 UTC"
    failed = Event(
        kind=RESTORE,
        outcome=FAILED,
        database="shop",
        error="the swap failed",
        finished=WHEN,
        details={"action": "undo"},
    )
    assert failed.headline() == "Undo of shop FAILED at 2026-12-04 22:15 UTC" and "the swap failed" in failed.text()


@pytest.mark.parametrize("document", [".env.example", "README.md", "docs/restore.md", "docs/api.md"])
def test_every_restore_setting_is_documented(document):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / document).read_text()
    assert [name for name in ("RESTORE_TOKEN", "RESTORE_SWAP_TIMEOUT", "RESTORE_JOBS") if name not in text] == []


def test_env_example_restore_values_start_cleanly():
    from pathlib import Path

    from dotenv import dotenv_values

    values = dotenv_values(Path(__file__).resolve().parents[2] / ".env.example")
    settings = Settings.from_env({**BASE, **{k: v or "" for k, v in values.items() if k.startswith("RESTORE_")}})
    assert settings.restore.token is None and settings.restore.swap_timeout_s == 30
