"""Benchmark: the dashboard's download of a dedup backup (the .sql.gz rebuilt from its chunks and streamed
through the service, `GET /api/v1/stored/<name>.sql.dedup`) against the download of the same database's
.sql.gz object (the 302 to a presigned URL, then the bucket's bytes), and `get NAME -o FILE`.

    .venv/bin/python -m bench.dedup_download --size 150MB [--rounds 3]

A throwaway database of about --size of plain SQL (bench/dataset.py), moto's S3 server on loopback (so the
figures are LOOPBACK ones, not a real bucket over the internet), one `upload` per format, one `serve` per
format. The rate the dashboard quotes for a dedup download (storage/dedup/sqlgz.py MEASURED_MB_S) comes from
here. Also printed: each service worker's peak RSS (VmHWM) after the downloads.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir
from backup_svc.storage.client import make_client
from backup_svc.storage.loopback import LoopbackS3
from bench.dataset import build, loopback_s3_vars, parse_size
from bench.rclone_download import worker_peak_rss_mb
from bench.restore import PASSWORD, Service

KEY = "bench-dedup-key-" + "b" * 32


def fetch(port: int, path: str, headers: dict[str, str]) -> tuple[int, str | None, int]:
    """(status, Location, bytes read) of one GET on loopback, the body read to its end."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    total = 0
    while chunk := response.read(1 << 20):
        total += len(chunk)
    conn.close()
    return response.status, response.headers.get("Location"), total


def download(service: Service, name: str) -> tuple[float, int]:
    """Seconds and bytes of one dashboard download: through the service, or its 302 followed to the bucket."""
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    started = time.perf_counter()
    status, location, total = fetch(service.port, f"/api/v1/stored/{name}", auth)
    if status == 302:
        parts = urlsplit(location)
        status, _, total = fetch(parts.port, parts.path + "?" + parts.query, {})
    assert status == 200, status
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="150MB", help="plain SQL of the database, e.g. 150MB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        LocalCluster(find_server_bin_dir(pg_bin_dirs(os.environ))) as cluster,
        tempfile.TemporaryDirectory() as scratch,
    ):
        build(cluster, parse_size(args.size))
        s3 = LoopbackS3().start()
        services: dict[str, Service] = {}
        try:
            s3_vars = loopback_s3_vars(s3.endpoint)
            client = make_client(s3_vars)
            formats = {"sqlgz": {}, "dedup": {"BACKUP_STORAGE_FORMAT": "dedup", "BACKUP_DEDUP_KEY": KEY}}
            names, envs = {}, {}
            for fmt, extra in formats.items():
                client.create_bucket(Bucket=f"bench-{fmt}")
                envs[fmt] = {
                    "DATABASE_URL": cluster.url("bench"),
                    **s3_vars,
                    "BACKUP_STORAGE_URL": f"s3://bench-{fmt}/b",
                    **extra,
                }
                done = subprocess.run(
                    [sys.executable, "-m", "backup_svc", "upload"],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **envs[fmt]},
                    check=True,
                )
                names[fmt] = done.stdout.split()[1].rsplit("/", 1)[1]
                services[fmt] = Service(envs[fmt])
            times: dict[str, list[float]] = {
                "sqlgz object (302 + bucket)": [],
                "dedup through the service": [],
                "dedup `get -o FILE`": [],
            }
            sizes: dict[str, int] = {}
            for r in range(args.rounds):
                for method in list(times) if r % 2 == 0 else list(reversed(times)):
                    if method.startswith("sqlgz"):
                        seconds, sizes[method] = download(services["sqlgz"], names["sqlgz"])
                    elif method.startswith("dedup through"):
                        seconds, sizes[method] = download(services["dedup"], names["dedup"])
                    else:
                        out = os.path.join(scratch, f"got-{r}.sql.gz")
                        started = time.perf_counter()
                        subprocess.run(
                            [sys.executable, "-m", "backup_svc", "get", names["dedup"], "-o", out],
                            capture_output=True,
                            env={**os.environ, **envs["dedup"]},
                            check=True,
                        )
                        seconds, sizes[method] = time.perf_counter() - started, os.path.getsize(out)
                        os.unlink(out)
                    times[method].append(seconds)
            print(
                f"\n## {args.size} of plain SQL, moto on LOOPBACK, {args.rounds} rounds, "
                f"load average {os.getloadavg()[0]:.2f} (uptime: {os.popen('uptime').read().strip()})"
            )
            print("| method | bytes | median s | min s | MB/s (median) |\n|---|---|---|---|---|")
            for method, values in times.items():
                median = statistics.median(values)
                print(
                    f"| {method} | {sizes[method] / 1e6:.1f} MB | {median:.2f} | {min(values):.2f} | "
                    f"{sizes[method] / median / 1e6:.1f} |"
                )
            rate = sizes["dedup through the service"] / statistics.median(times["dedup through the service"]) / 1e6
            print(
                f"\ndedup through the service: {rate:.1f} MB/s → Railway's 15 minutes allow about "
                f"{rate * 900 / 1e3:.1f} GB at this (loopback) rate"
            )
            for fmt, service in services.items():
                print(f"{fmt} service worker peak RSS (VmHWM): {worker_peak_rss_mb(service):.1f} MB")
        finally:
            for service in services.values():
                service.stop()
            s3.stop()


if __name__ == "__main__":
    main()
