"""Processes as the tests see them: the command line run as a user runs it, /proc (who is running,
its parent, command line and environment), stopping an `upload` mid-way, and waiting until something holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backup_svc.pg.localcluster import LocalCluster


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m backup_svc ARGS` as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "backup_svc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def restore_cli(source, target_url: str, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m backup_svc restore SOURCE --target-url TARGET [FLAGS]` (a file, or an s3:// or rclone: address)."""
    return run_cli("restore", str(source), "--target-url", target_url, *flags, env=env)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m backup_svc ARGS` started and left running (text pipes), for a test to stop or wait for."""
    return subprocess.Popen(
        [sys.executable, "-m", "backup_svc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_until(predicate, timeout_s: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passed; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def all_pids() -> list[int]:
    """Every process id in /proc now."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def parent_pid(pid: int) -> int | None:
    """The parent of `pid` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """The command line of `pid`, its arguments joined by spaces ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ_of(pid: int) -> dict[str, str]:
    """The environment a running process was started with (/proc/<pid>/environ)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def pg_dump_pids(cluster: LocalCluster) -> list[int]:
    """pg_dump processes talking to this test cluster (other tests' clusters use other ports)."""
    marker = f":{cluster.port}/"
    return [p for p in all_pids() if "pg_dump" in cmdline(p).split(" ")[0] and marker in cmdline(p)]


UPLOAD_KILLS = ["terminate backend", "SIGKILL pg_dump", "SIGTERM upload", "Ctrl-C upload"]


def kill_upload(kill: str, upload: subprocess.Popen, cluster: LocalCluster, dbname: str) -> None:
    """Stop a running `upload` one of the UPLOAD_KILLS ways: its pg_dump session terminated by the server,
    pg_dump killed outright, or the upload process sent SIGTERM (a redeploy) or SIGINT (Ctrl-C)."""
    if kill == "terminate backend":
        with cluster.connect(dbname) as db:
            terminated = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'backup_svc-upload%' AND backend_type = "
                "'client backend' AND application_name <> 'backup_svc-upload-lock'"
            ).fetchall()
        assert terminated, "no pg_dump session to terminate"
    elif kill == "SIGKILL pg_dump":
        for pid in pg_dump_pids(cluster):
            os.kill(pid, signal.SIGKILL)
    else:
        upload.send_signal(signal.SIGTERM if kill == "SIGTERM upload" else signal.SIGINT)


def upload_killed_once_begun(kill: str, upload: subprocess.Popen, begun, cluster: LocalCluster, dbname: str):
    """Wait (60 s at most) until `begun()` says the running `upload` is under way, stop it the `kill` way
    (kill_upload) and return (stdout, stderr, the exit status an upload stopped so must have)."""
    try:
        assert wait_until(begun, 60), "the upload never started"
        time.sleep(0.5)
        kill_upload(kill, upload, cluster, dbname)
        out, err = upload.communicate(timeout=60)
    finally:
        if upload.poll() is None:
            upload.kill()
    return out, err, {"SIGTERM upload": 143, "Ctrl-C upload": 130}.get(kill, 1)
