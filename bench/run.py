"""Benchmark: the service's download and a stored backup (`upload`, plain and age-encrypted) against
`pg_dump > /dev/null` and `pg_dump | gzip -6`, in one run.

    .venv/bin/python -m bench.run --size 300MB [--rounds 5] [--skip-latency] [--skip-upload]

Builds (once, kept under .cache/bench/) a database of about --size of plain SQL, then times the
four methods alternately --rounds times over the same unix socket, and prints medians, ratios,
output sizes, the service's and the uploading process's peak RSS, and health/dashboard latency
under 50 concurrent clients while a dump runs. The upload goes to moto's S3 server on loopback
(a separate process). Targets from the issues are printed as PASS/FAIL; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import compileall
import resource
import http.client
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from backup_svc.pg.binaries import default_pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir, free_port
from bench.dataset import BASELINE_FLAGS, DB, build, parse_size

REPO = Path(__file__).resolve().parent.parent

READ = 1 << 20


def timed(fn) -> tuple[float, int]:
    started = time.perf_counter()
    size = fn()
    return time.perf_counter() - started, size


def drain(stream) -> int:
    total = 0
    while chunk := stream.read(READ):
        total += len(chunk)
    return total


class Bench:
    def __init__(self, cluster: LocalCluster, extra_env: dict[str, str]):
        self.cluster = cluster
        self.pg_dump = os.path.join(cluster.bin_dir, "pg_dump")
        self.url = cluster.socket_url(DB)
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": self.url, "ADMIN_TOKEN": self.token, "PORT": str(self.port), **extra_env}
        self.env = env
        self.storage: subprocess.Popen | None = None
        self.service = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(200):
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)

    def stop(self) -> None:
        os.killpg(self.service.pid, signal.SIGTERM)
        self.service.wait(timeout=30)
        if self.storage is not None:
            os.killpg(self.storage.pid, signal.SIGTERM)
            self.storage.wait(timeout=30)

    def get(self, path: str, auth: bool = False) -> tuple[int, int]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"} if auth else {})
            resp = conn.getresponse()
            return resp.status, drain(resp)
        finally:
            conn.close()

    # -- the three methods ----------------------------------------------------------------------
    def pg_dump_devnull(self) -> int:
        subprocess.run([self.pg_dump, *BASELINE_FLAGS, self.url], stdout=subprocess.DEVNULL, check=True)
        return 0

    def pg_dump_gzip6(self) -> int:
        dump = subprocess.Popen([self.pg_dump, *BASELINE_FLAGS, self.url], stdout=subprocess.PIPE)
        gz = subprocess.Popen(["gzip", "-6"], stdin=dump.stdout, stdout=subprocess.PIPE)
        dump.stdout.close()
        size = drain(gz.stdout)
        assert gz.wait() == 0 and dump.wait() == 0
        return size

    def download(self) -> int:
        status, size = self.get("/api/v1/backup", auth=True)
        assert status == 200, status
        return size

    def upload(self) -> int:
        """`python -m backup_svc upload` into the loopback S3 server; its peak RSS is kept in upload_rss_mb."""
        return self._upload(self.upload_env, self.upload_rss_mb)

    def encrypted_upload(self) -> int:
        """The same with BACKUP_AGE_RECIPIENTS set: the stored backup age-encrypted on its way (issue 23)."""
        return self._upload(self.encrypted_env, self.encrypted_rss_mb)

    def _upload(self, env: dict[str, str], rss_mb: list[float]) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", "upload"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out = proc.stdout.read()
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, err.decode(errors="replace")
        # ru_maxrss of a waited child: the larger of its own peak and its waited children's (pg_dump).
        rss_mb.append(usage.ru_maxrss / 1024)
        key = out.split()[1].decode().split("/", 3)[3]
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        self.s3.delete_object(Bucket=self.bucket, Key=key)  # keep the loopback server's memory flat
        return head["ContentLength"]

    def start_storage(self) -> None:
        """moto's S3 server in a process of its own on a loopback port, and a bucket."""
        import boto3

        port = free_port()
        self.storage = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        endpoint = f"http://127.0.0.1:{port}"
        creds = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
            region_name="us-east-1",
        )
        self.bucket = "bench"
        for _ in range(200):
            try:
                self.s3.create_bucket(Bucket=self.bucket)
                break
            except Exception:
                time.sleep(0.1)
        self.upload_env = {
            **self.env,
            **creds,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_S3_URL_STYLE": "path",
            "BACKUP_STORAGE_URL": f"s3://{self.bucket}/bench",
        }
        self.upload_rss_mb: list[float] = []
        import pyrage

        # a throwaway recipient: the bench never decrypts (the tests prove the round trip)
        recipient = str(pyrage.x25519.Identity.generate().to_public())
        self.encrypted_env = {**self.upload_env, "BACKUP_AGE_RECIPIENTS": recipient}
        self.encrypted_rss_mb: list[float] = []

    def sql_size(self) -> int:
        dump = subprocess.Popen([self.pg_dump, *BASELINE_FLAGS, self.url], stdout=subprocess.PIPE)
        size = drain(dump.stdout)
        dump.wait()
        return size

    # -- measurements ---------------------------------------------------------------------------
    def peak_rss_mb(self) -> float:
        """VmHWM of the gunicorn worker (the child of the master), in MB."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("PPid", "0").strip()) == self.service.pid:
                return int(fields["VmHWM"].split()[0]) / 1024
        return float("nan")

    def latency_under_dump(self, bursts: int = 10, concurrency: int = 50) -> dict[str, list[float]]:
        """Latencies (s) of `/healthz` and `/` while a download runs: `bursts` rounds of `concurrency`
        requests sent at once by ApacheBench (a C client in its own process, so the measuring side
        adds no GIL contention of its own)."""
        if shutil.which("ab") is None:
            raise SystemExit(
                "the latency check needs ApacheBench: apt-get install apache2-utils (or pass --skip-latency)"
            )
        downloading = threading.Thread(target=self.download)
        downloading.start()
        time.sleep(0.3)
        results: dict[str, list[float]] = {"/healthz": [], "/": []}
        with tempfile.TemporaryDirectory() as tmp:
            timings = os.path.join(tmp, "ab.tsv")
            for _ in range(bursts):
                for path in results:
                    args = ["ab", "-q", "-n", str(concurrency), "-c", str(concurrency), "-g", timings]
                    if path == "/":
                        args += ["-H", f"Authorization: Bearer {self.token}"]
                    subprocess.run([*args, f"http://127.0.0.1:{self.port}{path}"], check=True, capture_output=True)
                    with open(timings) as f:
                        rows = f.read().splitlines()[1:]  # ttime (ms) is the 5th column
                    results[path] += [int(row.split("\t")[4]) / 1000 for row in rows]
        still_dumping = downloading.is_alive()
        downloading.join()
        if not still_dumping:
            print("  (note: the download ended before the latency bursts did: use a larger --size)")
        return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="300MB", help="plain-SQL size of the database (10MB, 300MB, 1.5GB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-upload", action="store_true", help="leave out the stored backup (upload)")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also time `pg_dump | isal -1 | aws s3 cp -` and the gzip -6 one (bench/peers.py; "
        "installs the AWS CLI into a throwaway venv under .cache/bench)",
    )
    parser.add_argument(
        "--rclone",
        action="store_true",
        help="also time `upload` to rclone remotes (local backend, webdav on loopback): bench/rclone.py",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the service (e.g. BACKUP_GZIP_LEVEL=6)",
    )
    args = parser.parse_args()

    label = args.size.upper()
    # As installed in the image (pip writes the bytecode there): with PYTHONDONTWRITEBYTECODE set, as in this
    # project's shells, an editable checkout would otherwise compile ~140 modules at every `upload` (~0.09 s).
    compileall.compile_dir(str(REPO / "backup_svc"), quiet=1)
    bin_dir = find_server_bin_dir(default_pg_bin_dirs())
    cluster = LocalCluster(bin_dir, root=str(REPO / ".cache" / "bench" / label)).start()
    try:
        build(cluster, parse_size(args.size))
        bench = Bench(cluster, dict(e.split("=", 1) for e in args.env))
        try:
            run(bench, args, label)
        finally:
            bench.stop()
    finally:
        cluster.stop()


def run(bench: Bench, args, label: str) -> None:
    sql = bench.sql_size()  # also warms the cache
    methods = {
        "pg_dump > /dev/null": bench.pg_dump_devnull,
        "pg_dump | gzip -6": bench.pg_dump_gzip6,
        "service download": bench.download,
    }
    if not args.skip_upload:
        bench.start_storage()
        methods["upload to loopback S3"] = bench.upload
        methods["encrypted upload (age)"] = bench.encrypted_upload
        if args.peers:
            from bench import peers

            peers.add(bench, methods, REPO / ".cache" / "bench")
        if args.rclone:
            from bench import rclone

            rclone.add(bench, methods, REPO / ".cache" / "bench")
    times: dict[str, list[float]] = {name: [] for name in methods}
    sizes: dict[str, int] = {}
    names = list(methods)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order every round
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds, size = timed(methods[name])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # CPU of the method's own processes once they ended and were waited for (pg_dump, the pipeline's
            # stages, the upload process); not the storage server's, not the running service's
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            times[name].append(seconds)
            sizes[name] = size
    base = statistics.median(times["pg_dump > /dev/null"])
    gz6 = statistics.median(times["pg_dump | gzip -6"])
    svc = statistics.median(times["service download"])
    rss = bench.peak_rss_mb()

    print(
        f"\n## {label}: {sql / 1e6:.1f} MB of plain SQL, {args.rounds} rotated rounds, unix socket, "
        f"PostgreSQL {Path(bench.pg_dump).parent.parent.name}"
    )
    print("| method | median s | min s | output MB | median / pg_dump>/dev/null |")
    print("|---|---|---|---|---|")
    for name in names:
        out = f"{sizes[name] / 1e6:.1f}" if sizes[name] else f"({sql / 1e6:.1f} SQL)"
        print(
            f"| {name} | {statistics.median(times[name]):.2f} | {min(times[name]):.2f} | {out} | "
            f"{statistics.median(times[name]) / base:.2f} |"
        )
    print(
        "\nCPU seconds of each method's own processes (user + system, median; the service download runs in the "
        "service, not counted):"
    )
    for name in names:
        if name != "service download":
            print(f"  {name}: {statistics.median(cpu[name]):.2f} s")
    print(f"\nservice peak RSS (VmHWM of the worker): {rss:.1f} MB")
    checks = [
        (f"download / pg_dump>/dev/null = {svc / base:.2f} (target <= 1.15)", svc / base <= 1.15),
        (f"gzip -6 / download = {gz6 / svc:.2f} (target >= 2.4)", gz6 / svc >= 2.4),
        (
            f"download output {sizes['service download'] / 1e6:.1f} MB vs gzip -6 {sizes['pg_dump | gzip -6'] / 1e6:.1f} MB",
            sizes["service download"] <= sizes["pg_dump | gzip -6"],
        ),
        (f"peak RSS {rss:.1f} MB (target < 80)", rss < 80),
    ]
    if not args.skip_upload:
        up = statistics.median(times["upload to loopback S3"])
        upload_rss = max(bench.upload_rss_mb)
        print(
            f"upload / download = {up / svc:.2f}; uploading process peak RSS {upload_rss:.1f} MB "
            f"(each round: {', '.join(f'{v:.1f}' for v in bench.upload_rss_mb)})"
        )
        checks.append((f"upload peak RSS {upload_rss:.1f} MB (target < 120)", upload_rss < 120))
        checks.append(
            (
                f"upload bytes {sizes['upload to loopback S3'] / 1e6:.1f} MB = download bytes "
                f"{sizes['service download'] / 1e6:.1f} MB (±1 %: pg_dump's \\restrict key differs)",
                abs(sizes["upload to loopback S3"] - sizes["service download"]) <= 0.01 * sizes["service download"],
            )
        )
        encrypted = statistics.median(times["encrypted upload (age)"])
        encrypted_rss = max(bench.encrypted_rss_mb)
        print(
            f"encrypted upload / upload = {encrypted / up:.2f}; its peak RSS {encrypted_rss:.1f} MB "
            f"(each round: {', '.join(f'{v:.1f}' for v in bench.encrypted_rss_mb)})"
        )
        checks.append((f"encrypted upload / upload = {encrypted / up:.2f} (target <= 1.10)", encrypted / up <= 1.10))
        checks.append((f"encrypted upload peak RSS {encrypted_rss:.1f} MB (target < 120)", encrypted_rss < 120))
        if args.peers:
            from bench import peers

            peers.report(times, checks)
        if args.rclone:
            from bench import rclone

            rclone.report(bench, times, sizes)
    if not args.skip_latency:
        lat = bench.latency_under_dump()
        for path, values in lat.items():
            p99 = pct(values, 0.99) * 1000
            print(
                f"{path}: {len(values)} requests in bursts of 50 concurrent, during a dump: "
                f"p50 {pct(values, 0.5) * 1000:.1f} ms, p99 {p99:.1f} ms, max {max(values) * 1000:.1f} ms"
            )
            checks.append((f"{path} p99 {p99:.1f} ms (target < 100)", p99 < 100))
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
