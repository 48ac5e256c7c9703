"""The service refuses to start, with one clear line naming the variable, when its settings are unsafe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

GOOD = {
    "DATABASE_URL": "postgresql://app:Db-pw-4f9Qz@db.internal:5432/appdb",
    "ADMIN_TOKEN": "Tok-7hG2-unique-admin-token-x9",
    "ADMIN_PASSWORD": "Pass-K3v8-unique-admin-pw",
}
SECRET_VARIABLES = ("ADMIN_TOKEN", "ADMIN_PASSWORD", "LINK_SECRET")


def _secret_values(overrides: dict) -> list[str]:
    """The secrets of one run, exactly as set (a value under 5 characters is too common to look for)."""
    settings = {**GOOD, **overrides}
    values = [settings.get(name) for name in SECRET_VARIABLES] + ["Db-pw-4f9Qz"]
    return [v for v in values if v and len(v) >= 5]


def _serve(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "ADMIN_TOKEN", "ADMIN_PASSWORD", "LINK_SECRET", "PORT")
    }
    env.update({**GOOD, **overrides, "PORT": "1"})
    env = {k: v for k, v in env.items() if v is not None}
    # cwd is an empty folder: no .env is read
    return subprocess.run(
        [sys.executable, "-m", "backup_svc", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "overrides,variable",
    [
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u:p@h/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@host:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:p@host:5432/"}, "DATABASE_URL"),
        ({"ADMIN_TOKEN": None, "ADMIN_PASSWORD": None}, "ADMIN_TOKEN nor ADMIN_PASSWORD"),
        ({"ADMIN_TOKEN": "short"}, "ADMIN_TOKEN"),
        ({"ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD"),
        ({"LINK_SECRET": "too-short"}, "LINK_SECRET"),
        ({"BACKUP_MAX_CONCURRENT": "0"}, "BACKUP_MAX_CONCURRENT"),
        ({"BACKUP_MAX_CONCURRENT": "two"}, "BACKUP_MAX_CONCURRENT"),
        ({"BACKUP_GZIP_LEVEL": "0"}, "BACKUP_GZIP_LEVEL"),
        ({"BACKUP_GZIP_LEVEL": "10"}, "BACKUP_GZIP_LEVEL"),
        # deduplicated stored backups (issue 28) cannot name their chunks without their key
        ({"BACKUP_STORAGE_URL": "s3://bkt/x", "BACKUP_STORAGE_FORMAT": "dedup"}, "BACKUP_DEDUP_KEY"),
    ],
)
def test_refuses_to_start(tmp_path, overrides, variable):
    result = _serve(tmp_path, **overrides)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert "Listening at" not in result.stderr + result.stdout
    output = result.stdout + result.stderr
    for secret in _secret_values(overrides):
        assert secret not in output, (secret, output)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://AKIAKEYID:s3cr3t-endpoint-pw@storage.example.com",
        "https://only-a-user-s3cr3t@storage.example.com",
        "storage.example.com/s3cr3t-endpoint-pw",
    ],
)
def test_an_endpoint_with_credentials_refuses_to_start_without_showing_them(tmp_path, endpoint):
    """Credentials belong in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: an endpoint URL is shown in `check`,
    the dashboard and the API, so one that carries them is refused — and not echoed while refusing it."""
    result = _serve(tmp_path, BACKUP_STORAGE_URL="s3://bkt/x", AWS_ENDPOINT_URL=endpoint)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AWS_ENDPOINT_URL" in lines[0], result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_every_problem_is_listed(tmp_path):
    result = _serve(tmp_path, DATABASE_URL=None, ADMIN_TOKEN="x", ADMIN_PASSWORD=None)
    assert result.returncode != 0
    text = result.stderr
    assert "DATABASE_URL" in text and "ADMIN_TOKEN must be at least 16" in text


def test_env_file_is_read_and_real_environment_wins(tmp_path):
    """The same variable in .env and in the environment, with values that give different messages."""
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://u:p@h:5432/fromfile\nBACKUP_MAX_CONCURRENT=0\n")
    from_file = _serve(tmp_path, DATABASE_URL=None)
    assert "BACKUP_MAX_CONCURRENT must be between 1 and 64, got 0" in from_file.stderr  # .env was read
    assert "DATABASE_URL" not in from_file.stderr  # taken from .env
    overridden = _serve(tmp_path, DATABASE_URL=None, BACKUP_MAX_CONCURRENT="99")
    assert "BACKUP_MAX_CONCURRENT must be between 1 and 64, got 99" in overridden.stderr  # the environment won
    assert "got 0" not in overridden.stderr
    assert "DATABASE_URL" not in overridden.stderr  # still taken from .env


def test_upload_refuses_the_dedup_format_without_its_key_before_touching_anything(tmp_path):
    """A cron service running `upload` with BACKUP_STORAGE_FORMAT=dedup and no BACKUP_DEDUP_KEY stops with one
    line and a non-zero exit before it dumps or contacts storage (the endpoint is a closed port: reaching it
    would be a different error)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "AWS_"))}
    env.update(
        {
            **GOOD,
            "BACKUP_STORAGE_URL": "s3://bkt/x",
            "BACKUP_STORAGE_FORMAT": "dedup",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "AWS_ACCESS_KEY_ID": "id-x",
            "AWS_SECRET_ACCESS_KEY": "secret-Qw8-not-shown",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "backup_svc", "upload"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BACKUP_DEDUP_KEY is not set" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "secret-Qw8" not in result.stderr + result.stdout
