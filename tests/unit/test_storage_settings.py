"""Storage settings in config.py: validated at start-up, one line per problem naming the variable."""

from __future__ import annotations

import pytest

from backup_svc.config import ConfigError, Settings
from tests import REPO

BASE = {"DATABASE_URL": "postgresql://u:p@db.example.com/shop", "ADMIN_TOKEN": "t" * 20}
VARIABLES = (
    "BACKUP_STORAGE_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_S3_URL_STYLE",
    "BACKUP_SCHEDULE",
    "BACKUP_RETENTION",
    "BACKUP_EXPECTED_SCHEDULE",
    "BACKUP_HISTORY_DAYS",
    "BACKUP_STORAGE_FORMAT",
    "BACKUP_DEDUP_KEY",
)
# any valid age recipient (the private half was thrown away)
AGE_RECIPIENT = "age1taa5v62nw7sj7c0yxuxxlt5aftgxay0vp2vxrwquy8stmcdgcgdstk940h"


def test_storage_is_off_without_a_url():
    assert Settings.from_env(BASE).storage is None


def test_a_full_configuration():
    storage = Settings.from_env(
        {
            **BASE,
            "BACKUP_STORAGE_URL": "s3://my-backups/postgres",
            "AWS_ENDPOINT_URL": "https://storage.railway.app",
            "AWS_ACCESS_KEY_ID": "tid_x",
            "AWS_SECRET_ACCESS_KEY": "tsec_y",
            "AWS_DEFAULT_REGION": "auto",
            "BACKUP_SCHEDULE": "0 3 * * *",
            "BACKUP_RETENTION": "last=7,monthly=12",
            "UNRELATED": "x",
        }
    ).storage
    assert (storage.location.bucket, storage.location.prefix) == ("my-backups", "postgres/")
    assert str(storage.schedule) == "0 3 * * *"
    assert str(storage.retention) == "last=7,monthly=12"
    assert storage.client_env == {
        "AWS_ENDPOINT_URL": "https://storage.railway.app",
        "AWS_ACCESS_KEY_ID": "tid_x",
        "AWS_SECRET_ACCESS_KEY": "tsec_y",
        "AWS_DEFAULT_REGION": "auto",
    }
    assert "tsec_y" not in repr(storage)
    assert storage.expected_schedule is None and storage.watched_schedule is storage.schedule


def test_an_rclone_remote_is_storage_with_only_its_own_variables():
    settings = Settings.from_env(
        {
            **BASE,
            "BACKUP_STORAGE_URL": "rclone:gdrive:db/backups/",
            "BACKUP_SCHEDULE": "0 3 * * *",
            "RCLONE_CONFIG_GDRIVE_TYPE": "drive",
            "AWS_SECRET_ACCESS_KEY": "not for rclone",
        }
    )
    storage = settings.storage
    assert storage.is_rclone and storage.location.url == "rclone:gdrive:db/backups"
    assert storage.client_env["RCLONE_CONFIG_GDRIVE_TYPE"] == "drive"
    assert "AWS_SECRET_ACCESS_KEY" not in storage.client_env and "DATABASE_URL" not in storage.client_env
    assert str(storage.schedule) == "0 3 * * *"


def test_an_rclone_remote_takes_encryption_as_s3_does():
    import pyrage

    recipient = str(pyrage.x25519.Identity.generate().to_public())
    settings = Settings.from_env({**BASE, "BACKUP_STORAGE_URL": "rclone:gdrive:x", "BACKUP_AGE_RECIPIENTS": recipient})
    assert settings.storage.is_rclone and [str(r.key) for r in settings.encryption.recipients] == [recipient]


def test_an_expected_schedule_is_watched_but_not_taken():
    settings = Settings.from_env(
        {
            **BASE,
            "BACKUP_STORAGE_URL": "s3://my-backups/postgres",
            "BACKUP_EXPECTED_SCHEDULE": "0 3 * * 1-5",
            "BACKUP_HISTORY_DAYS": "30",
        }
    )
    assert settings.storage.schedule is None and str(settings.storage.watched_schedule) == "0 3 * * 1-5"
    assert settings.history_days == 30 and Settings.from_env(BASE).history_days == 400


@pytest.mark.parametrize(
    "env, problem",
    [
        ({"BACKUP_STORAGE_URL": "s3:/my-backups"}, "BACKUP_STORAGE_URL names no valid bucket"),
        ({"BACKUP_STORAGE_URL": "rclone:gdrive"}, "BACKUP_STORAGE_URL must look like rclone:<remote>:<path>"),
        ({"BACKUP_STORAGE_URL": "rclone:g drive:x"}, "BACKUP_STORAGE_URL the remote name 'g drive' must be"),
        ({"BACKUP_STORAGE_URL": "s3://b/x"}, "BACKUP_STORAGE_URL names no valid bucket ('b'"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_SCHEDULE": "daily"}, "BACKUP_SCHEDULE must have 5 fields"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_SCHEDULE": "0 24 * * *"}, "BACKUP_SCHEDULE is not a valid cron"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_RETENTION": "keep=3"}, "BACKUP_RETENTION has 'keep=3'"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "AWS_ACCESS_KEY_ID": "x"}, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "AWS_ENDPOINT_URL": "storage.railway.app"}, "AWS_ENDPOINT_URL must start"),
        (
            {"BACKUP_STORAGE_URL": "s3://bkt", "AWS_ENDPOINT_URL": "https://id:pw@storage.railway.app"},
            "AWS_ENDPOINT_URL must not hold credentials",
        ),
        ({"BACKUP_SCHEDULE": "0 3 * * *"}, "BACKUP_SCHEDULE is set but BACKUP_STORAGE_URL is not"),
        ({"BACKUP_RETENTION": "last=3"}, "BACKUP_RETENTION is set but BACKUP_STORAGE_URL is not"),
        ({"BACKUP_EXPECTED_SCHEDULE": "0 3 * * *"}, "BACKUP_EXPECTED_SCHEDULE is set but BACKUP_STORAGE_URL is not"),
        ({"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_EXPECTED_SCHEDULE": "3am"}, "BACKUP_EXPECTED_SCHEDULE must have 5"),
        (
            {"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_SCHEDULE": "0 3 * * *", "BACKUP_EXPECTED_SCHEDULE": "0 3 * * *"},
            "BACKUP_SCHEDULE and BACKUP_EXPECTED_SCHEDULE are both set",
        ),
        ({"BACKUP_HISTORY_DAYS": "0"}, "BACKUP_HISTORY_DAYS must be between 1 and 36500"),
        (
            {"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_STORAGE_FORMAT": "dedup"},
            "BACKUP_DEDUP_KEY is not set, and BACKUP_STORAGE_FORMAT=dedup needs it",
        ),
        (
            {"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_STORAGE_FORMAT": "dedup", "BACKUP_DEDUP_KEY": "short-key"},
            "BACKUP_DEDUP_KEY must be at least 16 characters long",
        ),
        (
            {
                "BACKUP_STORAGE_URL": "s3://bkt",
                "BACKUP_STORAGE_FORMAT": "dedup",
                "BACKUP_DEDUP_KEY": "k" * 32,
                "BACKUP_AGE_RECIPIENTS": "age1notakey",
            },
            "BACKUP_AGE_RECIPIENTS",
        ),
        (
            {
                "BACKUP_STORAGE_URL": "rclone:gdrive:backups",
                "BACKUP_STORAGE_FORMAT": "dedup",
                "BACKUP_DEDUP_KEY": "k" * 32,
            },
            "BACKUP_STORAGE_FORMAT: only 'sqlgz' is supported on rclone remotes",
        ),
        (
            {"BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_STORAGE_FORMAT": "zip"},
            "BACKUP_STORAGE_FORMAT must be 'sqlgz' or 'dedup'",
        ),
        ({"BACKUP_STORAGE_FORMAT": "sqlgz"}, "BACKUP_STORAGE_FORMAT is set but BACKUP_STORAGE_URL is not"),
    ],
)
def test_problems_are_one_line_naming_the_variable(env, problem):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, **env})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)


def test_the_dedup_format_is_accepted_with_its_key_which_is_never_shown():
    settings = Settings.from_env(
        {
            **BASE,
            "BACKUP_STORAGE_URL": "s3://bkt",
            "BACKUP_STORAGE_FORMAT": " Dedup ",
            "BACKUP_DEDUP_KEY": "the-dedup-key-" + "x" * 20,
        }
    )
    assert settings.storage.storage_format == "dedup"
    assert settings.storage.dedup_key == "the-dedup-key-" + "x" * 20
    assert "the-dedup-key" not in repr(settings) + repr(settings.storage)


def test_the_dedup_format_is_accepted_with_age_recipients():
    """Issue 28 item 4: dedup + BACKUP_AGE_RECIPIENTS (refused before encrypted chunks existed) now starts."""
    settings = Settings.from_env(
        {
            **BASE,
            "BACKUP_STORAGE_URL": "s3://bkt",
            "BACKUP_STORAGE_FORMAT": "dedup",
            "BACKUP_DEDUP_KEY": "k" * 32,
            "BACKUP_AGE_RECIPIENTS": AGE_RECIPIENT,
        }
    )
    assert settings.storage.storage_format == "dedup"
    assert [r.text for r in settings.encryption.recipients] == [AGE_RECIPIENT]


@pytest.mark.parametrize("value", ["", "sqlgz", " SQLGZ "])
def test_the_sqlgz_format_is_the_default_and_accepted(value):
    settings = Settings.from_env({**BASE, "BACKUP_STORAGE_URL": "s3://bkt", "BACKUP_STORAGE_FORMAT": value})
    assert settings.storage.storage_format == "sqlgz"


@pytest.mark.parametrize("document", [".env.example", "README.md", "docs/storage.md"])
def test_every_storage_setting_is_documented(document):
    text = (REPO / document).read_text()
    assert [name for name in VARIABLES if name not in text] == []
