"""`get NAME [-o FILE]`: a stored backup as a local `.sql.gz`.

A dedup backup (`….sql.dedup`) is rebuilt from its chunks (storage/dedup/sqlgz.py: no recompression, each
chunk checked, the whole SQL's sha256 checked before the last gzip member is written); a `.sql.gz` object
is copied as it is, its bytes checked against the sha256 recorded with it. Like `dump -o`: the file is
written as `FILE.partial` and renamed only when complete; on any failure no file is left behind and the
exit status is 1. Only the AWS_* variables (and BACKUP_STORAGE_URL for a bare NAME, BACKUP_DEDUP_KEY for
a dedup backup's chunk ids, BACKUP_AGE_IDENTITY for an encrypted one) are needed, no DATABASE_URL. An
age-encrypted dedup backup is decrypted and written in the clear (a `.sql.gz.age` object is copied as is).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Iterator

from backup_svc.commands.output import fail, note, refuse, say
from backup_svc.problems import ConfigError

COPY_CHUNK = 1 << 20


def _object_of(name: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`, or of a backup name under BACKUP_STORAGE_URL; ConfigError/ValueError."""
    from backup_svc.storage.location import parse_object_url, parse_storage_url

    if name.startswith("s3://"):
        return parse_object_url(name)
    url = os.environ.get("BACKUP_STORAGE_URL", "")
    if not url:
        raise ConfigError(
            [
                "BACKUP_STORAGE_URL is not set: give the backup as s3://<bucket>/<key>, or set it so "
                "that NAME (as `list` prints it) is looked up there"
            ]
        )
    if url.startswith("rclone:"):
        raise ConfigError(
            [
                "get reads from s3:// storage; an rclone remote's backups are .sql.gz files already: "
                "fetch one with `rclone copyto`, or download it from the dashboard"
            ]
        )
    if "/" in name or not name:
        raise ValueError(f"{name!r} is not a backup name (`list` prints them, e.g. mydb_backup_20261205_030000.sql.gz)")
    location = parse_storage_url(url)
    return location.bucket, location.key(name)


def _object_bytes(stream) -> Iterator[bytes]:
    """A `.sql.gz` object's bytes; ValueError at the end if they are not the sha256 recorded with it."""
    digest = hashlib.sha256()
    while piece := stream.read(COPY_CHUNK):
        digest.update(piece)
        yield piece
    recorded = stream.metadata.get("sha256")
    if recorded and digest.hexdigest() != recorded:
        raise ValueError(f"{stream.name} has sha256 {digest.hexdigest()}, not the {recorded} recorded with it")


def cmd_get(args: argparse.Namespace) -> int:
    from backup_svc.commands.from_bucket import dedup_secret_from_env, storage_client_for_reading
    from backup_svc.crypto.common import DecryptionFailed, IdentityNeeded
    from backup_svc.crypto.settings import identities_from_env
    from backup_svc.files.reader import BadBackup
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.dedup.chunks import ChunkKey
    from backup_svc.storage.dedup.manifest import is_manifest_name
    from backup_svc.storage.dedup.source import dedup_opener
    from backup_svc.storage.dedup.sqlgz import sqlgz_members, sqlgz_name
    from backup_svc.storage.reader import open_object

    try:
        bucket, key = _object_of(args.name)
        client = storage_client_for_reading()
        secret = dedup_secret_from_env() if is_manifest_name(key) else ""
        problems: list[str] = []
        identities = identities_from_env(os.environ, problems) if is_manifest_name(key) else ()
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return refuse(exc.problems)
    except ValueError as exc:
        return refuse([str(exc)])
    url = f"s3://{bucket}/{key}"
    target = args.output or sqlgz_name(key.rsplit("/", 1)[-1])
    to_stdout = target == "-"
    partial = None if to_stdout else Path(f"{target}.partial")
    digest, written, chunks, mine = hashlib.sha256(), 0, 0, False
    try:
        first = open_object(client, bucket, key)  # fails early (no such key, no access) with one clear line
        if is_manifest_name(key):
            # an encrypted one's manifest and chunks are decrypted with BACKUP_AGE_IDENTITY (the file is in the clear)
            stream = dedup_opener(client, bucket, key, ChunkKey(secret) if secret else None, first, identities)()
            chunks, pieces = len(stream.manifest.chunks), sqlgz_members(stream)
        else:
            pieces = _object_bytes(first)
        out = sys.stdout.buffer if to_stdout else open(partial, "xb")
        mine = not to_stdout
        try:
            for piece in pieces:
                out.write(piece)
                digest.update(piece)
                written += len(piece)
            out.flush()
            if not to_stdout:
                os.fsync(out.fileno())
        finally:
            if not to_stdout:
                out.close()
        if not to_stdout:
            os.replace(partial, target)
    except FileExistsError:
        return fail(f"get failed: {partial} exists (another get writing it, or one that was killed): remove it")
    except IdentityNeeded:
        return fail(
            f"get failed: {url} is age-encrypted: set BACKUP_AGE_IDENTITY to the private key "
            "(a file path or the AGE-SECRET-KEY-1… value) to rebuild it"
        )
    except (StorageError, BadBackup, DecryptionFailed, ValueError, OSError) as exc:
        return fail(f"get failed: {url}: {exc}")
    except KeyboardInterrupt:
        say("get interrupted")
        return 130
    finally:
        if mine and partial.exists():  # failed or interrupted: never leave a partial file behind
            partial.unlink()
    what = (
        f"rebuilt from {chunks} chunks, the SQL's sha256 checked against the manifest"
        if is_manifest_name(key)
        else "copied, its recorded sha256 checked"
    )
    note(f"wrote {target}: {written} bytes ({what})")
    print(f"{digest.hexdigest()}  {target}")  # sha256sum's format, like `dump -o`
    return 0


def add_get_command(sub) -> None:
    get = sub.add_parser(
        "get", help="write a stored backup to a local .sql.gz (a dedup backup is rebuilt from its chunks, checked)"
    )
    get.add_argument(
        "name", help="the stored backup's name as `list` prints it (under BACKUP_STORAGE_URL), or s3://bucket/key"
    )
    get.add_argument("-o", "--output", help="file to write ('-' for stdout); default: the name, ending .sql.gz")
    get.set_defaults(func=cmd_get)
