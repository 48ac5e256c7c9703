"""Timeouts that mean what the docs say (docs/storage.md, "Slow and stalled links"): a part keeps going
while bytes move, however slowly, and a link that goes silent fails the upload in a bounded time.
moto's S3 server behind a throttling TCP proxy on loopback (tests/freezable_proxy.py: FreezableProxy with a rate)."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from backup_svc.storage.client import RetryPolicy, StorageError, make_client
from backup_svc.storage.upload import MultipartUpload

from tests.freezable_proxy import FreezableProxy
from tests.s3support import incomplete_uploads, object_keys, s3_env

MIB = 1024 * 1024
RATE = 100_000  # bytes per second: a slow bucket
# S3's smallest part (52 s at RATE). Loopback's socket buffers swallow up to 4 MB at once, so a part
# must be larger than that for its send to wait on the link, as the service's 16 MiB parts do anywhere.
PART = 5 * MIB


@pytest.fixture
def slow_link(moto_s3):
    proxy = FreezableProxy(moto_s3.port, rate=RATE)
    yield proxy
    proxy.close()


def test_a_100_kb_s_bucket_stores_a_multipart_backup(s3, slow_link):
    """Issue 21, fault 3: each part was sent with one `sendall` under the 10 s connect timeout, so
    below ~1.6 MB/s every attempt died at 10 s. The client is the service's own (make_client: connect
    10 s, read 60 s) with its production retries."""
    client, bucket = s3
    data = os.urandom(PART + 20_000)  # a full part and a short last one
    started = time.monotonic()
    slow = make_client(s3_env(slow_link.endpoint))
    with MultipartUpload(
        slow, bucket, "db/x_backup_20261204_030000.sql.gz", part_size=PART, retry=RetryPolicy()
    ) as upload:
        upload.write(data)
        stored = upload.complete()
    took = time.monotonic() - started
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    got = client.get_object(Bucket=bucket, Key="db/x_backup_20261204_030000.sql.gz")["Body"].read()
    assert got == data
    assert took > len(data) / RATE * 0.8, took  # it really went at the link's pace: no shortcut
    assert incomplete_uploads(client, bucket) == []


def test_a_stalled_bucket_fails_in_the_stated_time(s3, slow_link):
    """The link goes silent mid-part (no FIN, no RST). With timeouts scaled down (connect 2 s, read 3 s)
    and 2 attempts, the docs' bound is attempts x (connect + read) plus the retry pause: about 11 s.
    Nothing is stored and the upload is aborted."""
    client, bucket = s3
    quick = make_client(s3_env(slow_link.endpoint), connect_timeout_s=2, read_timeout_s=3)
    threading.Thread(target=lambda: (time.sleep(2), slow_link.freeze()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(StorageError, match="uploading part 1 .* after 2 attempts"):
        with MultipartUpload(
            quick,
            bucket,
            "db/x_backup_20261204_030000.sql.gz",
            part_size=PART,
            retry=RetryPolicy(attempts=2, first_delay_s=0.5, max_delay_s=0.5),
        ) as upload:
            upload.write(os.urandom(PART + 1000))
            upload.complete()
    took = time.monotonic() - started
    assert 4 < took < 2 + 2 * (2 + 3) + 0.5 + 3, took
    slow_link.thaw()
    assert object_keys(client, bucket) == []


def test_a_part_survives_a_pause_longer_than_the_connect_timeout(s3, moto_s3):
    """Issue 21, item 3: the send deadline was the connect timeout (10 s), so a link that took nothing
    for 10 s mid-part failed the attempt. Sending has its own deadline now (SEND_STALL_S, 30 s): with
    the service's own clients (make_client for the upload, make_part_client for its parts) and a single
    attempt, a part whose link pauses for 15 s mid-transfer is still stored."""
    from backup_svc.storage.client import CONNECT_TIMEOUT_S, SEND_STALL_S, make_part_client

    pause = CONNECT_TIMEOUT_S + 5
    assert pause < SEND_STALL_S
    link = FreezableProxy(moto_s3.port, rate=2_000_000)  # a 16 MiB part takes ~8 s: long enough to pause it
    try:
        client, bucket = s3
        data = os.urandom(16 * MIB)
        env = s3_env(link.endpoint)
        threading.Thread(
            target=lambda: (time.sleep(2), link.freeze(), time.sleep(pause), link.thaw()), daemon=True
        ).start()
        started = time.monotonic()
        with MultipartUpload(
            make_client(env),
            bucket,
            "db/x_backup_20261204_030000.sql.gz",
            part_size=16 * MIB,
            retry=RetryPolicy(attempts=1),
            part_client=make_part_client(env),
        ) as upload:
            upload.write(data)
            stored = upload.complete()
        took = time.monotonic() - started
        assert took > pause, took  # the pause really held the part up
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert client.get_object(Bucket=bucket, Key="db/x_backup_20261204_030000.sql.gz")["Body"].read() == data
    finally:
        link.close()
