"""`--rclone`: `upload` to an rclone remote beside `upload` to S3, on the same database, in the same run.

    .venv/bin/python -m bench.run --size 300MB --rounds 3 --skip-latency --rclone

Two remotes on this machine: rclone's `local` backend (a folder under .cache/bench/rclone-local) and
`rclone serve webdav` of another folder on a loopback port. Each stored backup and its companions are
deleted after its round; the uploading process's peak RSS (its own, or its largest waited child's:
pg_dump or `rclone rcat`) is kept per round (max printed). Loopback figures, not a real provider's.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

LOCAL = "upload to rclone local"
WEBDAV = "upload to rclone webdav (loopback)"
S3 = "upload to loopback S3"


def rclone_serve(
    kind: str, folder: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """`rclone serve <kind>` (webdav, sftp) of `folder` on a free loopback port, answering; (its process, the
    port). The tests' `served` fixture starts its servers with this too."""
    from backup_svc.pg.localcluster import free_port

    port = free_port()
    proc = subprocess.Popen(
        ["rclone", "serve", kind, str(folder), f"--addr=127.0.0.1:{port}", *flags],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


def serve_webdav(folder: Path) -> tuple[subprocess.Popen, int]:
    """`rclone serve webdav` of `folder` on a free loopback port, answering; (its process, the port)."""
    return rclone_serve("webdav", folder)


def add(bench, methods: dict, cache: Path) -> None:
    """Add the two rclone uploads to `methods`; bench.rclone_rss_mb collects each one's peak RSS."""
    local, served = cache / "rclone-local", cache / "rclone-served"
    for folder in (local, served):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    bench.webdav, port = serve_webdav(served)
    bench.rclone_rss_mb = {LOCAL: [], WEBDAV: []}
    base = {**bench.env, "BACKUP_AGE_RECIPIENTS": "", "BACKUP_RETENTION": ""}
    envs = {
        LOCAL: ({**base, "RCLONE_CONFIG_BENCH_TYPE": "local", "BACKUP_STORAGE_URL": f"rclone:bench:{local}"}, local),
        WEBDAV: (
            {
                **base,
                "RCLONE_CONFIG_BENCH_TYPE": "webdav",
                "RCLONE_CONFIG_BENCH_URL": f"http://127.0.0.1:{port}/",
                "BACKUP_STORAGE_URL": "rclone:bench:bench",
            },
            served / "bench",
        ),
    }

    def uploader(name: str):
        env, folder = envs[name]

        def run() -> int:
            proc = subprocess.Popen(
                [sys.executable, "-m", "backup_svc", "upload"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            proc.stdout.read()
            err = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.returncode == 0, err.decode(errors="replace")
            # ru_maxrss of a waited child: the larger of its own peak and its waited children's (pg_dump, rcat)
            bench.rclone_rss_mb[name].append(usage.ru_maxrss / 1024)
            stored = [f for f in os.listdir(folder) if f.endswith(".sql.gz")]
            size = (folder / stored[0]).stat().st_size
            for f in os.listdir(folder):
                os.remove(folder / f)
            return size

        return run

    methods[LOCAL] = uploader(LOCAL)
    methods[WEBDAV] = uploader(WEBDAV)


def report(bench, times: dict[str, list[float]], sizes: dict[str, int]) -> None:
    """Print each rclone upload's median against the S3 upload's, in MB/s of stored bytes."""
    s3 = statistics.median(times[S3])
    print(f"\n{S3}: median {s3:.2f} s, {sizes[S3] / 1e6 / s3:.1f} MB/s of stored bytes")
    for name in (LOCAL, WEBDAV):
        median = statistics.median(times[name])
        print(
            f"{name}: median {median:.2f} s, {sizes[name] / 1e6 / median:.1f} MB/s, {median / s3:.2f} × the S3 "
            f"upload; uploading process peak RSS {max(bench.rclone_rss_mb[name]):.1f} MB"
        )
    if getattr(bench, "webdav", None) is not None:
        bench.webdav.kill()
        bench.webdav.wait()
