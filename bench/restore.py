"""Benchmark: a restore from a stored object into a new database (the dashboard's path, through the
service) against the floor `gunzip -c FILE | psql -1` of the same bytes, and the downtime of a
replace while a client queries in a loop.

    .venv/bin/python -m bench.restore --size 10MB [--rounds 3]

Uses the kept bench cluster of `bench.run` (.cache/bench/<SIZE>/), moto's S3 server on loopback and
the real service. Downtime is measured as the issue defines it: from the client's first refused
connection to its first successful query that sees the restored data (the client connects afresh
for each query, every 10 ms, as an application whose pooled connection was ended would).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from backup_svc.config import default_pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir, free_port
from bench.dataset import DB, build, parse_size

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-" + secrets.token_urlsafe(16)


def start_moto() -> tuple[subprocess.Popen, dict[str, str]]:
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_S3_URL_STYLE": "path",
        "BACKUP_STORAGE_URL": "s3://bench/restore/",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        region_name="us-east-1",
    )
    for _ in range(200):
        try:
            s3.create_bucket(Bucket="bench")
            break
        except Exception:
            time.sleep(0.1)
    return proc, env


class Service:
    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", "serve"],
            env={**os.environ, **env, "PORT": str(self.port), "ADMIN_PASSWORD": PASSWORD},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while True:
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        auth = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, (json.loads(data) if data.startswith(b"{") else data.decode())

    def restore(self, backup: str, mode: str, confirm: str | None = None) -> dict:
        status, started = self.call("POST", "/api/v1/restores", {"backup": backup, "mode": mode, "confirm": confirm})
        assert status == 202, started
        while True:
            report = self.call("GET", started["progress_url"])[1]
            if report["state"] != "running":
                assert report["state"] == "done", report
                return report
            time.sleep(0.05)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


def floor(cluster: LocalCluster, path: Path, name: str) -> float:
    """`createdb; gunzip -c FILE | psql -1 -v ON_ERROR_STOP=1` (createdb included, as the service creates too)."""
    started = time.perf_counter()
    cluster.create_database(name)
    gunzip = subprocess.Popen(["gunzip", "-c", str(path)], stdout=subprocess.PIPE)
    subprocess.run(
        [
            os.path.join(cluster.bin_dir, "psql"),
            "-X",
            "-q",
            "-1",
            "-v",
            "ON_ERROR_STOP=1",
            "-o",
            "/dev/null",
            cluster.socket_url(name),
        ],
        stdin=gunzip.stdout,
        check=True,
    )
    gunzip.stdout.close()
    assert gunzip.wait() == 0
    return time.perf_counter() - started


def drop(cluster: LocalCluster, name: str) -> None:
    with cluster.connect() as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LoopingClient(threading.Thread):
    """Connects and queries every 10 ms; notes the first refusal and the first query that sees new data."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.errors = 0
        self.first_error: float | None = None
        self.first_new: float | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.url, connect_timeout=2) as db:
                    marked = db.execute("SELECT to_regclass('public.bench_marker') IS NOT NULL").fetchone()[0]
                if not marked and self.first_error is not None and self.first_new is None:
                    self.first_new = time.monotonic()
            except psycopg.Error:
                self.errors += 1
                if self.first_error is None:
                    self.first_error = time.monotonic()
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="10MB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replace-rounds", type=int, default=3, help="replaces measured (each undone)")
    args = parser.parse_args()
    label = args.size.upper()
    cluster = LocalCluster(
        find_server_bin_dir(default_pg_bin_dirs()), root=str(REPO / ".cache" / "bench" / label)
    ).start()
    moto, storage_env = start_moto()
    try:
        build(cluster, parse_size(args.size))
        live = cluster.url(DB)
        upload = subprocess.run(
            [sys.executable, "-m", "backup_svc", "upload"],
            capture_output=True,
            text=True,
            env={**os.environ, **storage_env, "DATABASE_URL": live},
            check=True,
        )
        url = upload.stdout.split()[1]
        name = url.rsplit("/", 1)[1]
        local = REPO / ".cache" / "bench" / f"{label}-restore.sql.gz"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, boto3, os; boto3.client('s3').download_file('bench', sys.argv[1], sys.argv[2])",
                url.split("/", 3)[3],
                str(local),
            ],
            env={**os.environ, **storage_env},
            check=True,
        )
        service = Service({**storage_env, "DATABASE_URL": live})
        try:
            times: dict[str, list[float]] = {"floor: gunzip -c | psql -1": [], "service restore (new database)": []}
            for r in range(args.rounds):
                order = list(times) if r % 2 == 0 else list(reversed(times))
                for method in order:
                    if method.startswith("floor"):
                        times[method].append(floor(cluster, local, "bench_floor"))
                        drop(cluster, "bench_floor")
                    else:
                        started = time.perf_counter()
                        report = service.restore(name, "new")
                        times[method].append(time.perf_counter() - started)
                        drop(cluster, report["target"])
            floor_s = statistics.median(times["floor: gunzip -c | psql -1"])
            print(
                f"\n## {label}: {os.path.getsize(local) / 1e6:.1f} MB stored object, {args.rounds} alternating rounds"
            )
            print("| method | median s | min s | median / floor |\n|---|---|---|---|")
            for method, values in times.items():
                print(
                    f"| {method} | {statistics.median(values):.2f} | {min(values):.2f} | "
                    f"{statistics.median(values) / floor_s:.2f} |"
                )
            for _ in range(args.replace_rounds):
                replace_downtime(cluster, service, name, live)
        finally:
            service.stop()
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=30)
        cluster.stop()


def replace_downtime(cluster: LocalCluster, service: Service, name: str, live: str) -> None:
    """Replace the live database while a client queries in a loop; undo afterwards so the cluster stays as built."""
    with cluster.connect(DB) as db:
        db.execute("CREATE TABLE IF NOT EXISTS bench_marker (x int)")  # not in the backup: gone after the swap
    client = LoopingClient(live)
    client.start()
    time.sleep(1)
    report = service.restore(name, "replace", confirm=DB)
    deadline = time.monotonic() + 30
    while client.first_new is None and time.monotonic() < deadline:
        time.sleep(0.01)
    client.stop.set()
    client.join(5)
    seen = (client.first_new - client.first_error) if client.first_new and client.first_error else None
    print(
        f"\nreplace: whole restore {report['elapsed_s']:.1f} s; connections refused by the swap for "
        f"{report['downtime_s']:.3f} s (service's measure); client: {client.errors} failed attempts, first refusal "
        f"to first query on the restored data {seen:.3f} s"
        if seen is not None
        else f"\nreplace: client saw no refusal (errors {client.errors}); swap {report['downtime_s']} s"
    )
    status, undone = service.call("POST", f"/api/v1/databases/{report['kept_as']}/undo")
    assert status == 200, undone
    drop(cluster, undone["kept_as"])
    with cluster.connect(DB) as db:
        db.execute("DROP TABLE bench_marker")  # written after the backup: it came back with the undo


if __name__ == "__main__":
    main()
