"""Benchmark: the dashboard's download of a backup stored on an rclone remote — `rclone cat` streamed through
the service (`GET /api/v1/stored/<name>`) — against `rclone cat` of the same file straight to /dev/null.

    .venv/bin/python -m bench.rclone_download --mb 150 [--rounds 3]

A throwaway cluster under .cache/bench/rclone-download/ holds one table of random bytes (`--mb` of it: gzip
cannot shrink them, so the stored backup is about that size); `upload` stores it on `rclone serve webdav` of
a folder on a loopback port; the real service (gunicorn) streams it. The figure the dashboard quotes
(storage/rclone_on_demand.py MEASURED_MB_S) comes from here: LOOPBACK, not a real provider over the internet.
Also printed: the worker's peak RSS (VmHWM) after the downloads, the memory bound of the stream.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import time

from backup_svc.config import default_pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir
from bench.rclone import serve_webdav
from bench.restore import PASSWORD, REPO, Service

DB = "randombytes"


def make_database(cluster: LocalCluster, megabytes: int) -> None:
    with cluster.connect() as db:
        db.autocommit = True
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            return
        db.execute(f"CREATE DATABASE {DB}")
    with cluster.connect(DB) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        db.execute("CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL)")
        # 1 MB per row in 1 KB pieces (gen_random_bytes gives at most 1024 at a time)
        db.execute(
            "INSERT INTO blobs SELECT g, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) "
            "FROM generate_series(1, 1024) WHERE g > 0) FROM generate_series(1, %s) g",
            (megabytes,),
        )
        db.commit()


def webdav(folder) -> tuple[subprocess.Popen, dict[str, str]]:
    proc, port = serve_webdav(folder)
    return proc, {
        "RCLONE_CONFIG_BENCH_TYPE": "webdav",
        "RCLONE_CONFIG_BENCH_URL": f"http://127.0.0.1:{port}/",
        "BACKUP_STORAGE_URL": "rclone:bench:backups",
    }


def download(service: Service, name: str) -> tuple[float, int]:
    import base64

    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=600)
    auth = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    started = time.perf_counter()
    conn.request("GET", f"/api/v1/stored/{name}", headers={"Authorization": f"Basic {auth}"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    total = 0
    while chunk := response.read(1 << 20):
        total += len(chunk)
    conn.close()
    return time.perf_counter() - started, total


def worker_peak_rss_mb(service: Service) -> float:
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(service.proc.pid):
            return int(fields["VmHWM"].split()[0]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = REPO / ".cache" / "bench" / "rclone-download"
    cluster = LocalCluster(find_server_bin_dir(default_pg_bin_dirs()), root=str(root / "cluster")).start()
    served = root / "served"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir(parents=True)
    dav, remote_env = webdav(served)
    try:
        make_database(cluster, args.mb)
        env = {**os.environ, **remote_env, "DATABASE_URL": cluster.url(DB)}
        upload = subprocess.run(
            [sys.executable, "-m", "backup_svc", "upload"], capture_output=True, text=True, env=env, check=True
        )
        name = upload.stdout.split()[1].rsplit("/", 1)[1]
        size = (served / "backups" / name).stat().st_size
        service = Service({**remote_env, "DATABASE_URL": cluster.url(DB)})
        try:
            times = {"rclone cat > /dev/null": [], "download through the service": []}
            for r in range(args.rounds):
                for method in list(times) if r % 2 == 0 else list(reversed(times)):
                    if method.startswith("rclone"):
                        started = time.perf_counter()
                        subprocess.run(
                            ["rclone", "cat", f"bench:backups/{name}"], env=env, check=True, stdout=subprocess.DEVNULL
                        )
                        times[method].append(time.perf_counter() - started)
                    else:
                        seconds, got = download(service, name)
                        assert got == size, (got, size)
                        times[method].append(seconds)
            print(
                f"\n## {size / 1e6:.1f} MB stored backup on `rclone serve webdav` (LOOPBACK), {args.rounds} rounds, "
                f"load average {os.getloadavg()[0]:.2f}"
            )
            print("| method | median s | min s | MB/s (median) |\n|---|---|---|---|")
            for method, values in times.items():
                median = statistics.median(values)
                print(f"| {method} | {median:.2f} | {min(values):.2f} | {size / median / 1e6:.1f} |")
            rate = size / statistics.median(times["download through the service"]) / 1e6
            print(
                f"\nthrough the service: {rate:.1f} MB/s → Railway's 15 minutes allow about "
                f"{rate * 900 / 1e3:.1f} GB at this (loopback) rate"
            )
            print(f"service worker peak RSS (VmHWM): {worker_peak_rss_mb(service):.1f} MB")
        finally:
            service.stop()
    finally:
        dav.kill()
        dav.wait()
        cluster.stop()


if __name__ == "__main__":
    main()
