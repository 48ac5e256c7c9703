"""The upload's cross-check: the bytes the parts hold are the bytes the dump produced.

The dump keeps the CRC32 of its output and the upload the CRC32 of its parts, in order (issue 25: it was a
second sha256, ten times the CPU). A writer that alters what it buffers is a bug this check exists for, and a
bug cannot be caused for real: `MultipartUpload.write` is wrapped in this process to alter one byte of one
chunk. Everything else is real: the PostgreSQL cluster, pg_dump, moto's S3 server and the multipart upload.
"""

from __future__ import annotations

import hashlib

import pytest

from backup_svc.config import Settings
from backup_svc.storage.client import StorageError
from backup_svc.storage.take import take_stored_backup
from backup_svc.storage.upload import MultipartUpload

from tests.s3support import FAST_RETRY, incomplete_uploads, object_keys, s3_env


def _settings(db_url: str, bucket: str, endpoint: str) -> Settings:
    env = {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/b", **s3_env(endpoint)}
    return Settings.from_env(env, require_auth=False)


def test_bytes_altered_on_their_way_into_the_parts_store_nothing(monkeypatch, s3, moto_s3, rich_db):
    client, bucket = s3
    settings = _settings(rich_db, bucket, moto_s3.endpoint)
    write = MultipartUpload.write
    altered = []

    def altering_write(self, data):
        if not altered and len(data) > 100:
            altered.append(len(data))
            data = data[:50] + bytes([data[50] ^ 0x01]) + data[51:]  # same length: only the content differs
        return write(self, data)

    monkeypatch.setattr(MultipartUpload, "write", altering_write)
    with pytest.raises(StorageError, match="the bytes uploaded differ from the bytes the dump produced"):
        take_stored_backup(settings.dump, settings.storage, client=client, retry=FAST_RETRY)
    assert altered
    assert object_keys(client, bucket) == []
    assert incomplete_uploads(client, bucket) == []


def test_an_unaltered_upload_records_the_sha256_of_the_object(s3, moto_s3, rich_db):
    """The same run without the fault: the dump no longer hashes its output with sha256 for an upload, so the
    sha256 recorded (and the run's progress) is the upload's own, of the object's bytes."""
    from backup_svc.dump.attempt import DumpProgress

    client, bucket = s3
    settings = _settings(rich_db, bucket, moto_s3.endpoint)
    progress = DumpProgress()
    result = take_stored_backup(settings.dump, settings.storage, client=client, retry=FAST_RETRY, progress=progress)
    body = client.get_object(Bucket=bucket, Key=result.stored.key)["Body"].read()
    assert result.stored.sha256 == hashlib.sha256(body).hexdigest() == progress.sha256
    assert progress.crc32 is not None
