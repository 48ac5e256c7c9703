"""Memory stays bounded whatever the backup's size: the download (gunicorn worker) and `upload` (the
multipart sink) stream the dump, they never hold it whole.

Each test dumps a database of ~150 MB of random bytes (a gzipped dump of about that size: random bytes do
not compress) and reads the peak resident memory (VmHWM in /proc/<pid>/status) of every process it
started, against a ceiling well below the dump's size. An implementation that buffers the whole dump
— or even half of it — goes over. Real parts only: the session's PostgreSQL, real gunicorn, moto's S3
server, `python -m backup_svc upload` as cron runs it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import zlib

import pytest

from tests import REPO
from tests.processes import all_pids, cmdline, parent_pid
from tests.s3support import incomplete_uploads, object_keys, s3_env

MIB = 1024 * 1024
ROWS = 50_000  # × 3000 random bytes = ~150 MB of table data
# The download's growth over the idle worker: a few 64 KiB reads and the gzip window, plus Python's slack.
DOWNLOAD_CEILING = 32 * MIB
# The upload's growth over the process when pg_dump starts: backup_svc/storage/upload.py holds at most
# PART_BUFFERS × PART_SIZE = 32 MiB of part buffers; the S3 clients are made after pg_dump starts (botocore's
# import and S3 model, ~26 MiB), plus what botocore keeps while sending a part. Measured 64.4–64.8 MiB;
# a third part buffer (the design before branch issue-25m) made 80.0–80.1 MiB.
UPLOAD_CEILING = 72 * MIB


@pytest.fixture(scope="module")
def huge_db(pg_cluster):
    """A database whose gzipped dump (~150 MB) is far bigger than either ceiling."""
    url = pg_cluster.create_database(
        "membound",
        f"""
        CREATE EXTENSION pgcrypto;
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO blobs SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000)
          FROM generate_series(1, {ROWS}) g;
    """,
    )
    yield url
    with pg_cluster.connect() as db:
        db.execute('DROP DATABASE IF EXISTS "membound" WITH (FORCE)')


def status_kib(pid: int, field: str) -> int | None:
    """`field` (VmHWM, VmRSS) of /proc/<pid>/status in KiB; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def descendants(root: int) -> list[int]:
    """Every live process below `root`."""
    parents = {pid: parent_pid(pid) for pid in all_pids()}
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class PeakWatch:
    """Polls /proc every 20 ms: the highest VmHWM seen for each process of a tree (root included)."""

    def __init__(self, root: int):
        self.root, self.peaks, self.names = root, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in [self.root, *descendants(self.root)]:
                hwm = status_kib(pid, "VmHWM")
                if hwm is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                    if pid not in self.names:
                        try:
                            self.names[pid] = open(f"/proc/{pid}/comm").read().strip()
                        except OSError:
                            pass
            time.sleep(0.02)

    def report(self) -> str:
        return ", ".join(f"{self.names.get(p, '?')}[{p}] {kib / 1024:.1f} MiB" for p, kib in self.peaks.items())


def test_a_download_of_a_dump_bigger_than_the_ceiling_keeps_the_worker_under_it(huge_db, start_service):
    service = start_service(DATABASE_URL=huge_db)
    (worker,) = service.worker_pids()
    assert service.request("GET", "/api/v1/database", service.auth()).status == 200  # modules loaded
    idle = status_kib(worker, "VmRSS") * 1024

    conn, resp = service.start_download(timeout=120)
    assert resp.status == 200
    received, digest, sql_tail = 0, hashlib.sha256(), b""
    unzip = zlib.decompressobj(wbits=31)
    with PeakWatch(service.proc.pid) as watch:
        while chunk := resp.read(256 * 1024):
            received += len(chunk)
            digest.update(chunk)
            sql_tail = (sql_tail + unzip.decompress(chunk))[-4096:]
    conn.close()
    assert unzip.eof and b"PostgreSQL database dump complete" in sql_tail  # the whole dump arrived
    assert received > 100 * MIB

    growth = status_kib(worker, "VmHWM") * 1024 - idle  # the worker lives on: its VmHWM is exact
    print(
        f"download: {received / MIB:.1f} MiB; worker idle {idle / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB;"
        f" peaks seen: {watch.report()}"
    )
    assert growth < DOWNLOAD_CEILING < received / 3, watch.report()
    # pg_dump, the worker's child, streams too (its peak is whatever it reached, not a growth)
    children = {pid: kib for pid, kib in watch.peaks.items() if pid not in (service.proc.pid, worker)}
    assert children and all(kib * 1024 < DOWNLOAD_CEILING for kib in children.values()), watch.report()


def test_an_upload_of_a_dump_bigger_than_the_ceiling_keeps_the_process_under_it(huge_db, s3, moto_s3):
    client, bucket = s3
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": huge_db,
        "BACKUP_STORAGE_URL": f"s3://{bucket}/",
        **s3_env(moto_s3.endpoint),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "backup_svc", "upload"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # the upload process's own memory when it starts pg_dump: imports done, the S3 clients not made yet (not
    # when it asks the installed pg_dumps for their versions, which it does first: pg/binaries.probe_soon)
    at_dump_start = None
    deadline = time.monotonic() + 60
    while at_dump_start is None and time.monotonic() < deadline and proc.poll() is None:
        commands = [cmdline(pid) for pid in descendants(proc.pid)]
        if any("pg_dump" in command and "--version" not in command for command in commands):
            at_dump_start = status_kib(proc.pid, "VmRSS")
        time.sleep(0.01)
    assert at_dump_start is not None, proc.communicate()
    with PeakWatch(proc.pid) as watch:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()
    sha256, url = stdout.decode().split()
    (key,) = [k for k in object_keys(client, bucket) if k.endswith(".sql.gz")]
    assert url == f"s3://{bucket}/{key}"
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    record = client.get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read().decode()
    assert record.split()[0] == sha256
    assert size > 100 * MIB and incomplete_uploads(client, bucket) == []

    peak = watch.peaks[proc.pid] * 1024  # polled: may miss the last 20 ms, never more than the true peak
    growth = peak - at_dump_start * 1024
    print(
        f"upload: {size / MIB:.1f} MiB stored; process at pg_dump start {at_dump_start / 1024:.1f} MiB,"
        f" growth {growth / MIB:.1f} MiB; peaks seen: {watch.report()}"
    )
    assert growth < UPLOAD_CEILING < size * 2 / 3, watch.report()
