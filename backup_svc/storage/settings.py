"""The object-storage settings (BACKUP_STORAGE_URL, AWS_*, BACKUP_SCHEDULE, BACKUP_RETENTION,
BACKUP_SHRINK_ALERT, BACKUP_STORAGE_FORMAT, BACKUP_DEDUP_KEY), validated.

config.py calls `storage_settings` so that every problem is reported at start-up, one line each,
naming its variable. Nothing here imports botocore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from backup_svc.storage.client import StorageConfigError, client_settings
from backup_svc.storage.location import StorageLocation, parse_storage_url
from backup_svc.storage.rclone_target import RcloneLocation, child_env, is_rclone_url, parse_rclone_url
from backup_svc.storage.retention import RetentionPolicy, parse_retention
from backup_svc.storage.schedule import CronSchedule, parse_schedule
from backup_svc.storage.shape import DEFAULT_SHRINK_PERCENT, parse_shrink_alert
from backup_svc.storage.storeformat import DEFAULT_FORMAT, dedup_key_problem, parse_storage_format

CLIENT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_S3_URL_STYLE",
)


@dataclass(frozen=True)
class StorageSettings:
    """Where stored backups go, how the client reaches it, when backups run and what is kept."""

    location: StorageLocation | RcloneLocation  # s3://bucket/prefix, or rclone:<remote>:<path>
    # the AWS_* variables, or for an rclone remote its RCLONE_* ones (secrets either way)
    client_env: dict[str, str] = field(default_factory=dict, repr=False)
    schedule: CronSchedule | None = None
    retention: RetentionPolicy | None = None
    # percent below the median of the previous backups that raises the shrink alarm; None = off
    shrink_alert: float | None = DEFAULT_SHRINK_PERCENT
    # BACKUP_EXPECTED_SCHEDULE: when another process (a cron service running `upload`) stores backups;
    # `serve` watches for them on it but takes none itself.
    expected_schedule: CronSchedule | None = None
    # BACKUP_HISTORY_DAYS (config.NUMBER_SETTINGS reads it): the history's retention, applied after each stored backup.
    history_days: int = 400
    # BACKUP_STORAGE_FORMAT: `sqlgz` (one .sql.gz object per backup) or `dedup` (chunks + a manifest, backup_svc/storage/dedup/).
    storage_format: str = DEFAULT_FORMAT
    # BACKUP_DEDUP_KEY: the HMAC key that names chunks (a secret: never shown, never logged).
    dedup_key: str = field(default="", repr=False)

    @property
    def is_rclone(self) -> bool:
        """The backups go to an rclone remote (storage/rclone_target.py), not a bucket."""
        return isinstance(self.location, RcloneLocation)

    @property
    def watched_schedule(self) -> CronSchedule | None:
        """The schedule stored backups are expected on, whoever takes them (staleness is judged against it)."""
        return self.schedule or self.expected_schedule


def client_env(env: Mapping[str, str]) -> dict[str, str]:
    """Just the AWS_* variables the S3 client reads."""
    return {name: env[name] for name in CLIENT_VARIABLES if env.get(name)}


def check_client_env(env: Mapping[str, str], problems: list[str]) -> None:
    """Add a line to `problems` for each AWS_* value the client could not use."""
    try:
        client_settings(env)
    except StorageConfigError as exc:
        problems.append(str(exc))
    if bool(env.get("AWS_ACCESS_KEY_ID")) != bool(env.get("AWS_SECRET_ACCESS_KEY")):
        problems.append("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")


def storage_settings(env: Mapping[str, str], problems: list[str]) -> StorageSettings | None:
    """The storage settings from `env`, or None when BACKUP_STORAGE_URL is unset; problems are appended.

    BACKUP_SCHEDULE and BACKUP_RETENTION without BACKUP_STORAGE_URL are problems too: they would
    silently do nothing.
    """
    url = env.get("BACKUP_STORAGE_URL", "").strip()
    schedule = retention = location = None
    shrink_alert = DEFAULT_SHRINK_PERCENT
    try:
        schedule = parse_schedule(env.get("BACKUP_SCHEDULE", ""))
    except ValueError as exc:
        problems.append(f"BACKUP_SCHEDULE {exc}")
    try:
        retention = parse_retention(env.get("BACKUP_RETENTION", ""))
    except ValueError as exc:
        problems.append(f"BACKUP_RETENTION {exc}")
    try:
        shrink_alert = parse_shrink_alert(env.get("BACKUP_SHRINK_ALERT", ""))
    except ValueError as exc:
        problems.append(f"BACKUP_SHRINK_ALERT {exc}")
    expected = None
    try:
        expected = parse_schedule(env.get("BACKUP_EXPECTED_SCHEDULE", ""))
    except ValueError as exc:
        problems.append(f"BACKUP_EXPECTED_SCHEDULE {exc}")
    storage_format = DEFAULT_FORMAT
    try:
        storage_format = parse_storage_format(env.get("BACKUP_STORAGE_FORMAT", ""))
    except ValueError as exc:
        problems.append(f"BACKUP_STORAGE_FORMAT {exc}")
    dedup_key = env.get("BACKUP_DEDUP_KEY", "")
    if url:
        key_problem = dedup_key_problem(storage_format, dedup_key)
        if key_problem:
            problems.append(key_problem)
    if expected is not None and schedule is not None:
        problems.append(
            "BACKUP_SCHEDULE and BACKUP_EXPECTED_SCHEDULE are both set: set BACKUP_SCHEDULE when this "
            "service takes the stored backups, BACKUP_EXPECTED_SCHEDULE when another process (a cron "
            "service running `upload`) does — not both"
        )
    if not url:
        for name in ("BACKUP_SCHEDULE", "BACKUP_RETENTION", "BACKUP_EXPECTED_SCHEDULE", "BACKUP_STORAGE_FORMAT"):
            if env.get(name, "").strip():
                problems.append(
                    f"{name} is set but BACKUP_STORAGE_URL is not: set it to s3://<bucket>/<prefix> "
                    "or rclone:<remote>:<path>"
                )
        return None
    if is_rclone_url(url):  # the remote is configured by rclone's own RCLONE_CONFIG_<NAME>_* variables
        if storage_format != DEFAULT_FORMAT:
            problems.append(
                "BACKUP_STORAGE_FORMAT: only 'sqlgz' is supported on rclone remotes (deduplicated "
                "backups need s3://…): unset it or set it to 'sqlgz'"
            )
        try:
            location = parse_rclone_url(url.strip())
        except ValueError as exc:
            problems.append(f"BACKUP_STORAGE_URL {exc}")
        variables = child_env(env)
    else:
        try:
            location = parse_storage_url(url)
        except ValueError as exc:
            problems.append(f"BACKUP_STORAGE_URL {exc}")
        check_client_env(env, problems)
        variables = client_env(env)
    if location is None:
        return None
    return StorageSettings(
        location=location,
        client_env=variables,
        schedule=schedule,
        retention=retention,
        shrink_alert=shrink_alert,
        expected_schedule=expected,
        storage_format=storage_format,
        dedup_key=dedup_key,
    )


def reading_client(env: Mapping[str, str]):
    """An S3 client from the AWS_* variables alone (`verify`/`restore`/`get` of an `s3://…` address need no
    other setting); ConfigError naming each problem."""
    from backup_svc.problems import ConfigError
    from backup_svc.storage.client import make_client

    problems: list[str] = []
    check_client_env(env, problems)
    if problems:
        raise ConfigError(problems)
    return make_client(client_env(env))
