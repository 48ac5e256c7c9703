"""`check` judges a process by its job: `--for serve` needs an admin secret, `--for upload` (a cron
service) needs storage and no admin secret; without --for it tells them apart by their variables.
The exit status is "this process can do its job"; a missing alert channel is a warning, not a failure.
Real PostgreSQL and moto's S3 server on loopback."""

from __future__ import annotations

import pytest

from tests.processes import run_cli
from tests.s3support import s3_env

HEARTBEAT = "https://hc-ping.example/0f4d6c8e-5b1a-4c7e-9a1d-3e2f1b0c9d8a"


def uploader_env(endpoint: str, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    """A cron service's variables: database, storage, retention — no admin secret."""
    env = {
        "DATABASE_URL": db_url,
        "BACKUP_STORAGE_URL": f"s3://{bucket}/",
        "BACKUP_RETENTION": "last=7",
        "HEARTBEAT_URL": HEARTBEAT,
        **s3_env(endpoint),
        **extra,
    }
    return {name: value for name, value in env.items() if value is not None}


def without_admin(env: dict[str, str]) -> dict[str, str]:
    return {**env, "ADMIN_TOKEN": "", "ADMIN_PASSWORD": ""}


def test_a_cron_service_without_admin_secrets_passes(s3, moto_s3, rich_db):
    _, bucket = s3
    done = run_cli("check", env=without_admin(uploader_env(moto_s3.endpoint, bucket, rich_db)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("checking as: upload (BACKUP_STORAGE_URL is set and no admin secret")
    assert "configuration: ok (no admin secret needed: this process serves nothing)" in done.stdout
    assert "ADMIN_TOKEN nor ADMIN_PASSWORD" not in done.stdout
    assert "result: ok — this process can store backups" in done.stdout
    assert "alerts: warning" not in done.stdout
    explicit = run_cli("check", "--for", "upload", env=without_admin(uploader_env(moto_s3.endpoint, bucket, rich_db)))
    assert explicit.returncode == 0 and explicit.stdout.startswith("checking as: upload (--for;")


def test_the_same_process_checked_as_a_server_fails_and_says_why(s3, moto_s3, rich_db):
    _, bucket = s3
    done = run_cli("check", "--for", "serve", env=without_admin(uploader_env(moto_s3.endpoint, bucket, rich_db)))
    assert done.returncode == 1
    assert "configuration: neither ADMIN_TOKEN nor ADMIN_PASSWORD is set: nobody could log in" in done.stdout
    assert "result: NOT ready — this process cannot serve backups" in done.stdout


def test_an_uploader_without_storage_cannot_do_its_job(rich_db):
    done = run_cli("check", "--for", "upload", env=without_admin({"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": ""}))
    assert done.returncode == 1
    assert "configuration: BACKUP_STORAGE_URL is not set: `upload` has nowhere to store backups" in done.stdout


def test_no_secret_no_storage_is_checked_as_a_server(rich_db):
    done = run_cli("check", env=without_admin({"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": ""}))
    assert done.returncode == 1
    assert done.stdout.startswith("checking as: serve (no admin secret and no BACKUP_STORAGE_URL")


@pytest.mark.parametrize("purpose", ["serve", "upload"])
def test_stored_backups_without_any_alert_channel_warn_but_do_not_fail(s3, moto_s3, rich_db, purpose):
    _, bucket = s3
    env = uploader_env(
        moto_s3.endpoint,
        bucket,
        rich_db,
        HEARTBEAT_URL="",
        BACKUP_SCHEDULE="0 3 * * *",
        ADMIN_TOKEN="t" * 24 if purpose == "serve" else "",
    )
    done = run_cli("check", env=env)
    assert done.stdout.startswith(f"checking as: {purpose}")
    assert done.returncode == 0, done.stdout
    assert (
        "alerts: warning — stored backups are on, but no alert channel is set: a failed or missing backup "
        "tells nobody. Set HEARTBEAT_URL"
    ) in done.stdout
    with_mail = run_cli(
        "check",
        env={
            **env,
            "SMTP_URL": "smtp://127.0.0.1:2525",
            "NOTIFY_EMAIL_TO": "a@example.com",
            "NOTIFY_EMAIL_FROM": "b@example.com",
        },
    )
    assert with_mail.returncode == 0
    assert "alerts: warning" not in with_mail.stdout
    assert "alerts: note — no HEARTBEAT_URL" in with_mail.stdout  # the heartbeat is still recommended


def test_without_storage_there_is_no_alert_warning(rich_db):
    done = run_cli("check", env={"DATABASE_URL": rich_db, "ADMIN_TOKEN": "t" * 24, "BACKUP_STORAGE_URL": ""})
    assert done.returncode == 0, done.stdout
    assert "alerts:" not in done.stdout
