"""Issue 25: the sha256 recorded beside the object (`<key>.sha256`, no server-side copy) survives a
process killed at every step: no object ever claims a hash it does not have.

The uploading process is a real child process against moto's server; it SIGKILLs itself right after
its N-th storage request has been answered (a botocore event hook: the one fault injected, because a
kill between two given requests cannot be timed from outside), for every N up to the finished upload.
An orphaned record from an earlier object under the same key (a deleted backup whose record stayed)
is seeded first, so a reader that trusted any record would be caught.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

from backup_svc.storage.companion import companion_key, with_companion
from backup_svc.storage.sameobject import TOKEN

from tests.s3support import FAST_RETRY, s3_env

MIB = 1024 * 1024
KEY = "db/x_backup_20261205_030000.sql.gz"

CHILD = textwrap.dedent("""
    import os, random, signal, sys
    from backup_svc.storage.client import make_client
    from backup_svc.storage.upload import MultipartUpload
    from tests.s3support import FAST_RETRY

    bucket, key, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = make_client(os.environ)
    calls = [0]

    def after(**_):
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    client.meta.events.register("after-call.s3.*", after)
    data = random.Random(25).randbytes(11 * 1024 * 1024)
    with MultipartUpload(client, bucket, key, part_size=5 * 1024 * 1024, retry=FAST_RETRY) as upload:
        for start in range(0, len(data), 256 * 1024):
            upload.write(data[start:start + 256 * 1024])
        upload.complete({"written-by": "backup_svc"})
    print(calls[0])
""")


def run_child(moto_s3, bucket: str, kill_after: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, bucket, KEY, str(kill_after)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **s3_env(moto_s3.endpoint)},
    )


def claimed_sha256(client, bucket: str) -> tuple[str | None, str | None]:
    """(the sha256 a reader takes for KEY, the sha256 of its bytes); (None, None) when there is no object."""
    try:
        head = client.head_object(Bucket=bucket, Key=KEY)
    except Exception:
        return None, None
    metadata = with_companion(
        client,
        bucket,
        KEY,
        head.get("Metadata", {}),
        etag=head.get("ETag"),
        size=head.get("ContentLength"),
        retry=FAST_RETRY,
    )
    actual = hashlib.sha256(client.get_object(Bucket=bucket, Key=KEY)["Body"].read()).hexdigest()
    return metadata.get("sha256"), actual


def clean(client, bucket: str) -> None:
    for key in (KEY, companion_key(KEY)):
        client.delete_object(Bucket=bucket, Key=key)
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    client.put_object(
        Bucket=bucket,
        Key=companion_key(KEY),
        Body=b"0" * 64 + b"  x\n",
        Metadata={
            "sha256": "0" * 64,
            TOKEN: "an-earlier-upload",
            "object-etag": "x",
            "object-size": "1",
            "written-by": "backup_svc",
        },
    )


def test_a_process_killed_at_every_step_leaves_no_object_claiming_a_wrong_hash(s3, moto_s3):
    client, bucket = s3
    clean(client, bucket)
    finished = run_child(moto_s3, bucket, kill_after=10_000)
    assert finished.returncode == 0, finished.stderr
    total = int(finished.stdout.split()[-1])
    claimed, actual = claimed_sha256(client, bucket)
    assert claimed == actual is not None  # the whole run: the object and its record
    assert total >= 7  # HEAD, create, 3 parts, HEAD, complete, record, read-back…

    outcomes = {}
    for n in range(1, total + 1):
        clean(client, bucket)
        done = run_child(moto_s3, bucket, kill_after=n)
        assert done.returncode in (-signal.SIGKILL, 0), done.stderr
        claimed, actual = claimed_sha256(client, bucket)
        assert claimed is None or claimed == actual, f"killed after request {n}: claims {claimed}, is {actual}"
        outcomes[n] = "object with its sha256" if claimed else ("object without sha256" if actual else "no object")
    # the kills fell on every stage: before the object, between the object and its record, after both
    assert {"no object", "object without sha256", "object with its sha256"} <= set(outcomes.values()), outcomes
