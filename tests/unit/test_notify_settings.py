"""Notification settings: each variable parsed, each mistake one line naming it, no secret echoed."""

from __future__ import annotations

import pytest

from backup_svc.config import ConfigError, parse_database_url
from backup_svc.notify.settings import NotifySettings, parse_smtp_url

SECRET = "s3cr3t-Passw0rd!"


def problems(env: dict[str, str], **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        NotifySettings.from_env(env, **kwargs)
    return caught.value.problems


@pytest.mark.parametrize(
    "url, host, port, security, user",
    [
        ("smtp://me%40gmail.com:pw@smtp.gmail.com:587", "smtp.gmail.com", 587, "starttls", "me@gmail.com"),
        ("smtp://apikey:pw@smtp.example.com", "smtp.example.com", 587, "starttls", "apikey"),
        ("smtps://u:pw@email-smtp.eu-west-1.amazonaws.com:465", "email-smtp.eu-west-1.amazonaws.com", 465, "tls", "u"),
        ("smtps://u:pw@smtp.example.com", "smtp.example.com", 465, "tls", "u"),
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, "plain", None),
        ("smtp://localhost", "localhost", 25, "plain", None),
        ("smtp://[::1]:25", "::1", 25, "plain", None),
    ],
)
def test_smtp_url_forms(url, host, port, security, user):
    target = parse_smtp_url(url)
    assert (target.host, target.port, target.security, target.username) == (host, port, security, user)


def test_smtp_password_is_unquoted_and_never_described():
    target = parse_smtp_url("smtps://user:p%40ss%2Fword@smtp.example.com:465")
    assert target.password == "p@ss/word"
    assert "p@ss" not in target.describe() and "p@ss" not in repr(target)


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"http://u:{SECRET}@smtp.example.com", "SMTP_URL must start with smtp://"),
        ("smtp://", "SMTP_URL names no host"),
        (f"smtp://u:{SECRET}@smtp.example.com:587/x", "SMTP_URL must be just"),
        (f"smtp://u:{SECRET}@smtp.example.com:99999", "SMTP_URL is not a valid URL"),
    ],
)
def test_smtp_url_mistakes_name_the_variable_without_the_secret(url, expected):
    found = problems({"SMTP_URL": url, "NOTIFY_EMAIL_TO": "a@example.com", "NOTIFY_EMAIL_FROM": "b@example.com"})
    assert len(found) == 1 and found[0].startswith(expected), found
    assert SECRET not in found[0]


def test_mail_needs_recipients_and_a_sender():
    found = problems({"SMTP_URL": "smtp://smtp.example.com"})
    assert any(p.startswith("NOTIFY_EMAIL_TO is not set") for p in found)
    assert any(p.startswith("NOTIFY_EMAIL_FROM is not set") for p in found)


def test_sender_defaults_to_a_login_that_is_an_address():
    s = NotifySettings.from_env(
        {"SMTP_URL": "smtps://ops%40example.com:pw@smtp.example.com", "NOTIFY_EMAIL_TO": "a@example.com, b@example.com"}
    )
    assert s.email_from == "ops@example.com"
    assert s.email_to == ["a@example.com", "b@example.com"]


def test_bad_recipient_is_named():
    found = problems(
        {
            "SMTP_URL": "smtp://localhost",
            "NOTIFY_EMAIL_TO": "a@example.com, nobody",
            "NOTIFY_EMAIL_FROM": "b@example.com",
        }
    )
    assert found == ["NOTIFY_EMAIL_TO must be comma-separated e-mail addresses; not one: 'nobody'"]


def test_addresses_without_smtp_url_are_a_mistake():
    assert problems({"NOTIFY_EMAIL_TO": "a@example.com"})[0].startswith("NOTIFY_EMAIL_TO / NOTIFY_EMAIL_FROM are set")


@pytest.mark.parametrize("name", ["NOTIFY_WEBHOOK_URL", "HEARTBEAT_URL"])
@pytest.mark.parametrize("value", ["ftp://example.com/x", "hooks.slack.com/services/T0/B0/abc", "http://"])
def test_http_urls_are_checked(name, value):
    assert problems({name: value}) == [f"{name} must be an http:// or https:// URL with a host"]


def test_notify_on():
    assert NotifySettings.from_env({}).notify_on == "failure"
    assert NotifySettings.from_env({"NOTIFY_ON": "Always"}).notify_on == "always"
    assert problems({"NOTIFY_ON": "sometimes"}) == ["NOTIFY_ON must be 'failure' or 'always', got 'sometimes'"]


@pytest.mark.parametrize(
    "drill_url",
    [
        f"postgresql://admin:{SECRET}@db.internal:5432/shop",
        f"postgres://other:{SECRET}@db.internal/shop?sslmode=require",
    ],
)
def test_drill_url_pointing_at_the_source_is_refused(drill_url):
    source = parse_database_url("postgresql://app:pw@db.internal:5432/shop")
    found = problems({"RESTORE_DRILL_URL": drill_url}, source=source)
    assert found[0].startswith("RESTORE_DRILL_URL points at the backed-up database")
    assert SECRET not in found[0]


def test_loopback_names_are_one_host_for_the_drill_check():
    source = parse_database_url("postgresql://app:pw@127.0.0.1:5432/shop")
    assert problems({"RESTORE_DRILL_URL": "postgresql://u:p@localhost/shop"}, source=source)


@pytest.mark.parametrize(
    "drill_url",
    [
        "postgresql://u:p@db.internal:5432/postgres",  # the same server, another (maintenance) database
        "postgresql://u:p@db.internal:5433/shop",
        "postgresql://u:p@scratch.internal:5432/shop",
    ],
)
def test_drill_url_elsewhere_is_accepted(drill_url):
    source = parse_database_url("postgresql://app:pw@db.internal:5432/shop")
    assert NotifySettings.from_env({"RESTORE_DRILL_URL": drill_url}, source=source).drill is not None


def test_describe_and_secrets_hide_tokens():
    hook = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
    ping = "https://hc-ping.com/0f7a3b8e-1111-2222-3333-444455556666"
    s = NotifySettings.from_env(
        {
            "NOTIFY_WEBHOOK_URL": hook,
            "HEARTBEAT_URL": ping,
            "SMTP_URL": f"smtps://u:{SECRET}@smtp.example.com",
            "NOTIFY_EMAIL_TO": "a@example.com",
            "NOTIFY_EMAIL_FROM": "b@example.com",
        }
    )
    text = "\n".join(s.describe()) + repr(s)
    assert "XXXXXXXX" not in text and "0f7a3b8e" not in text and SECRET not in text
    assert "webhook: https://hooks.slack.com/…" in text and "heartbeat: https://hc-ping.com/…" in text
    assert {hook, ping, SECRET, "services/T000/B000/XXXXXXXXXXXXXXXX"} <= set(s.secrets())


@pytest.mark.parametrize(
    "url, uri",
    [
        ("postgresql://u:pw@scratch:5433/postgres", "postgresql://u@scratch:5433/backup_svc_drill_x"),
        (
            "postgres://u:pw@scratch/postgres?sslmode=require",
            "postgresql://u@scratch/backup_svc_drill_x?sslmode=require",
        ),
        (
            "postgresql://u@scratch/ignored?dbname=postgres&sslmode=verify-full",
            "postgresql://u@scratch/backup_svc_drill_x?sslmode=verify-full",
        ),
    ],
)
def test_drill_scratch_connection_keeps_server_and_options(url, uri):
    from backup_svc.notify.drill import with_database

    scratch = with_database(parse_database_url(url), "backup_svc_drill_x")
    assert (scratch.uri, scratch.dbname) == (uri, "backup_svc_drill_x")
    assert scratch.password == parse_database_url(url).password


NOTIFY_VARIABLES = (
    "SMTP_URL",
    "NOTIFY_EMAIL_TO",
    "NOTIFY_EMAIL_FROM",
    "NOTIFY_WEBHOOK_URL",
    "NOTIFY_ON",
    "HEARTBEAT_URL",
    "RESTORE_DRILL_URL",
)


@pytest.mark.parametrize("document", [".env.example", "README.md", "docs/notifications.md"])
def test_every_notification_setting_is_documented(document):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / document).read_text()
    assert [name for name in NOTIFY_VARIABLES if name not in text] == []


def test_env_example_values_are_valid():
    """A copied .env.example (every notification setting empty or at its default) starts cleanly."""
    from pathlib import Path

    from dotenv import dotenv_values

    values = dotenv_values(Path(__file__).resolve().parents[2] / ".env.example")
    settings = NotifySettings.from_env({k: v or "" for k, v in values.items() if k in NOTIFY_VARIABLES})
    assert not settings.any_channel and settings.drill is None and settings.notify_on == "failure"
