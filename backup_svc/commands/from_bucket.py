"""`verify s3://bucket/key` and `restore s3://bucket/key`: the same checks as for a file, read straight
from the bucket (no temp file), plus the sha256 stored with the object. Only the AWS_* variables are
needed, no DATABASE_URL.
"""

from __future__ import annotations

import argparse
import os

from backup_svc.commands.output import fail, note, refuse, say
from backup_svc.storage.dedup.manifest import is_manifest_name
from backup_svc.problems import ConfigError


def storage_client_for_reading():
    """A client for `verify s3://…` / `restore s3://…`: only the AWS_* variables are needed."""
    from backup_svc.storage.settings import reading_client

    return reading_client(os.environ)


def dedup_secret_from_env() -> str:
    """BACKUP_DEDUP_KEY, which checks each chunk's id of a dedup backup; "" (and a warning) when it is unset."""
    from backup_svc.storage.storeformat import dedup_key_problem

    secret = os.environ.get("BACKUP_DEDUP_KEY", "")
    problem = dedup_key_problem("", secret)
    if problem:
        raise ConfigError([problem])
    if not secret:
        say(
            "warning: BACKUP_DEDUP_KEY is not set, so each chunk's id cannot be checked; each chunk must still "
            "inflate and the whole SQL must have the sha256 its manifest records"
        )
    return secret


def _stored_source(url: str):
    """(opener, stored sha256) for `s3://bucket/key` or `rclone:<remote>:<path>/<name>`;
    ConfigError / StorageError / ValueError."""
    from backup_svc.crypto.keys import BadKey
    from backup_svc.crypto.settings import identities_from_env, reading_opener

    if url.startswith("rclone:"):
        from backup_svc.storage.rclone_reader import open_stored

        rclone_opener, stored = open_stored(url, os.environ)
        return reading_opener(url, rclone_opener, os.environ), stored
    from backup_svc.storage.dedup.source import stored_opener
    from backup_svc.storage.location import parse_object_url
    from backup_svc.storage.reader import open_object

    bucket, key = parse_object_url(url)
    client = storage_client_for_reading()
    first = open_object(client, bucket, key)  # fails early (no such key, no access) with one clear line
    # a dedup backup: its SQL streams from the chunks its manifest names, each checked with BACKUP_DEDUP_KEY
    # (an encrypted one's manifest and chunks decrypted with BACKUP_AGE_IDENTITY)
    problems: list[str] = []
    identities = identities_from_env(os.environ, problems)
    if problems:
        raise BadKey(problems[0])
    opener = stored_opener(
        client, bucket, key, first, dedup_secret_from_env() if is_manifest_name(key) else "", identities
    )

    # an age-encrypted object is decrypted with BACKUP_AGE_IDENTITY as it streams
    return reading_opener(url, opener, os.environ), first.metadata.get("sha256")


def _sha256_check(url: str, stored_sha256: str | None):
    from backup_svc.files.reader import BadBackup

    def check(report) -> None:
        if stored_sha256 is None:
            say(f"warning: {url} has no stored sha256 to compare (it was not stored by backup_svc's upload)")
        elif stored_sha256 != report.sha256:
            raise BadBackup(
                f"its bytes have sha256 {report.sha256}, but the sha256 stored with it is "
                f"{stored_sha256}: the object changed after it was stored"
            )

    return check


def verify_stored(url: str) -> int:
    """`verify s3://bucket/key`: the same checks as for a file, read straight from the bucket, plus the
    stored sha256."""
    from backup_svc.files.reader import BadBackup
    from backup_svc.files.verify import verify_file
    from backup_svc.storage.client import StorageError

    try:
        opener, stored_sha256 = _stored_source(url)
        report = verify_file(url, opener)
        _sha256_check(url, stored_sha256)(report)
    except ConfigError as exc:
        return refuse(exc.problems)
    except (ValueError, StorageError, BadBackup) as exc:
        return fail(f"verify failed: {url}: {exc}")
    print("\n".join(report.lines()))
    if stored_sha256 == report.sha256:
        print("  stored sha256:    matches")
    return 0


def restore_stored(args: argparse.Namespace) -> int:
    """`restore s3://bucket/key --target-url …`: verify from the bucket (and its stored sha256), then
    stream the object into psql. No temp file: the object is read twice."""
    from backup_svc.commands.exits import Terminated, restore_stopped, sigterm_raises, what_stopped
    from backup_svc.files.psqlfeed import RestoreFailed
    from backup_svc.files.reader import BadBackup
    from backup_svc.files.restore import restore_file
    from backup_svc.pg.binaries import pg_bin_dirs
    from backup_svc.storage.client import StorageError

    url = args.file
    try:
        with sigterm_raises():  # as `restore FILE`: the database --create made is dropped
            opener, stored_sha256 = _stored_source(url)
            report = restore_file(
                url,
                args.target_url,
                bin_dirs=pg_bin_dirs(os.environ),
                force=args.force,
                create=args.create,
                say=note,
                opener=opener,
                jobs=args.jobs,
                check=_sha256_check(url, stored_sha256),
            )
    except ConfigError as exc:
        return refuse(exc.problems)
    except (ValueError, BadBackup) as exc:
        return fail(f"restore refused: {url}: {exc}; nothing was restored")
    except StorageError as exc:
        return fail(f"restore failed: {exc}; {what_stopped(args.jobs, args.create)}, nothing was restored")
    except RestoreFailed as exc:
        return fail(f"restore failed: {exc}")
    except (KeyboardInterrupt, Terminated) as exc:
        return restore_stopped(exc, jobs=args.jobs, create=args.create)
    print(report.summary(url))
    return 0
