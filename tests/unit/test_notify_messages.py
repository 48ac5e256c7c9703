"""What each channel says: subject, body, webhook JSON, ping URLs, scrubbed URLs."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from backup_svc.notify.common import Event, safe_url
from backup_svc.notify.heartbeat import ping_url
from backup_svc.notify.mail import body, build_message, subject

STARTED = datetime(2026, 11, 28, 19, 30, 0, tzinfo=timezone.utc)
FINISHED = datetime(2026, 11, 28, 19, 31, 5, tzinfo=timezone.utc)
SHA = "ab" * 32
OK_BACKUP = Event(
    kind="backup",
    outcome="ok",
    database="shop",
    name="shop_backup_20261128_193000.sql.gz",
    bytes=3 * 1024 * 1024,
    sha256=SHA,
    started=STARTED,
    finished=FINISHED,
)
FAILED_BACKUP = Event(
    kind="backup",
    outcome="failed",
    database="shop",
    error="cannot reach the database server",
    started=STARTED,
    finished=FINISHED,
)


def test_subject_says_database_outcome_and_time():
    assert subject(FAILED_BACKUP) == "[backup_svc] shop: backup FAILED at 2026-11-28 19:31 UTC"
    assert subject(OK_BACKUP) == "[backup_svc] shop: backup ok at 2026-11-28 19:31 UTC"


def test_success_body_has_object_size_and_sha256():
    text = body(OK_BACKUP)
    assert "Object:    shop_backup_20261128_193000.sql.gz" in text
    assert "Size:      3.0 MiB (3145728 bytes)" in text
    assert f"SHA-256:   {SHA}" in text
    assert "What to do: Nothing to do." in text


def test_failure_body_has_reason_and_what_to_do():
    text = body(FAILED_BACKUP)
    assert max(len(line) for line in text.splitlines()) < 78
    text = " ".join(text.split())
    assert "nothing was stored for this run: cannot reach the database server." in text
    assert "What to do: Earlier stored backups are untouched." in text
    assert "python -m backup_svc check" in text
    assert "SHA-256" not in text


def test_message_headers():
    message = build_message(FAILED_BACKUP, "backups@example.com", ["a@example.com", "b@example.com"])
    assert message["To"] == "a@example.com, b@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@example.com>")


def test_webhook_payload_fields():
    payload = OK_BACKUP.payload()
    assert {
        k: payload[k]
        for k in ("event", "outcome", "database", "name", "bytes", "sha256", "error", "started", "finished")
    } == {
        "event": "backup",
        "outcome": "ok",
        "database": "shop",
        "name": "shop_backup_20261128_193000.sql.gz",
        "bytes": 3145728,
        "sha256": SHA,
        "error": None,
        "started": "2026-11-28T19:30:00Z",
        "finished": "2026-11-28T19:31:05Z",
    }
    assert payload["text"] == payload["content"]
    assert payload["text"].startswith("Backup of shop ok at 2026-11-28 19:31 UTC.")


def test_chat_text_fits_discord():
    event = Event(kind="backup", outcome="failed", database="shop", error="x" * 5000)
    assert len(event.payload()["content"]) <= 2000


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/…"),
        ("https://discord.com/api/webhooks/123/tok", "https://discord.com/…"),
        ("https://user:pw@example.com:8443/hook?token=x", "https://example.com:8443/…"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("https://hc-ping.com/uuid", "https://hc-ping.com/…"),
    ],
)
def test_safe_url(url, shown):
    assert safe_url(url) == shown


@pytest.mark.parametrize(
    "url, failed, expected",
    [
        ("https://hc-ping.com/abc", False, "https://hc-ping.com/abc"),
        ("https://hc-ping.com/abc", True, "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/abc/", True, "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/key/slug?create=1", True, "https://hc-ping.com/key/slug/fail?create=1"),
    ],
)
def test_ping_url(url, failed, expected):
    assert ping_url(url, failed) == expected


def test_the_docs_sample_mail_is_what_is_sent():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    sample = re.search(r"A failure mail looks like this[^`]*```\n(.*?)```", text, re.S).group(1)
    headers, sent_body = sample.split("\n\n", 1)
    event = Event(
        kind="backup",
        outcome="failed",
        database="shop",
        error="cannot reach the database server (connection refused)",
        started=datetime(2026, 11, 28, 19, 30, 0, tzinfo=timezone.utc),
        finished=datetime(2026, 11, 28, 19, 30, 3, tzinfo=timezone.utc),
    )
    assert sent_body == body(event)
    assert f"Subject: {subject(event)}" in headers
