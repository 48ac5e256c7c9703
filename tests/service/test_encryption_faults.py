"""A stored backup whose encryptor breaks: nothing is stored, no upload is left incomplete, pg_dump is stopped.

The encryptor (pyrage's `encrypt_io`) is replaced in this process by a broken one: a fault that cannot be
caused for real (age itself does not fail half-way or emit cleartext). Everything else is real: the
PostgreSQL cluster, pg_dump, moto's S3 server and the multipart upload.
"""

from __future__ import annotations

import subprocess

import pyrage
import pytest

from backup_svc.config import Settings
from backup_svc.crypto.common import AGE_MAGIC, EncryptionFailed
from backup_svc.storage.take import take_stored_backup
from tests.processes import pg_dump_pids, wait_until
from tests.s3support import FAST_RETRY, incomplete_uploads, object_keys, s3_env


def fails_half_way(reader, writer, recipients, armored=False):
    """Writes a real-looking header and 20 MiB (so a 16 MiB part is already uploaded), then fails as an
    encryptor error would."""
    writer.write(AGE_MAGIC + b"-> X25519 fake\n")
    sent = 0
    while sent < 20 * 1024 * 1024 and (data := reader.read(8192)):
        writer.write(bytes(b ^ 0x5A for b in data[:16]) + data[16:])
        sent += len(data)
    assert sent >= 20 * 1024 * 1024, "the test needs a dump larger than one part"
    raise pyrage.EncryptError("injected failure while encrypting")


def passes_cleartext(reader, writer, recipients, armored=False):
    """A broken encryptor that copies its input: the service must refuse to store what comes out."""
    while data := reader.read(8192):
        writer.write(data)


@pytest.mark.parametrize("broken", [fails_half_way, passes_cleartext], ids=["fails half-way", "passes cleartext"])
def test_a_broken_encryptor_stores_nothing_and_leaves_no_upload(
    broken, monkeypatch, s3, moto_s3, big_db, pg_cluster, tmp_path
):
    client, bucket = s3
    key_file = tmp_path / "age.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True, text=True).stdout
    settings = Settings.from_env(
        {
            "DATABASE_URL": big_db,
            "BACKUP_STORAGE_URL": f"s3://{bucket}/b",
            "BACKUP_AGE_RECIPIENTS": public.strip(),
            **s3_env(moto_s3.endpoint),
        },
        require_auth=False,
    )
    monkeypatch.setattr(pyrage, "encrypt_io", broken)
    with pytest.raises(EncryptionFailed) as failed:
        take_stored_backup(
            settings.dump, settings.storage, client=client, retry=FAST_RETRY, recipients=settings.encryption.recipients
        )
    assert ("injected failure" in str(failed.value)) or ("not in age format" in str(failed.value))
    assert object_keys(client, bucket) == []
    assert incomplete_uploads(client, bucket) == []
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)
