"""The rclone storage target against real rclone: the `local` backend and `rclone serve webdav` on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time

import pytest

from backup_svc.storage.client import StorageError
from backup_svc.storage.rclone_target import RcloneTarget, parse_rclone_url
from tests import REPO
from tests.databases import snapshot
from tests.processes import run_cli
from tests.s3support import remote_files

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "rclone"], capture_output=True).returncode != 0,
    reason="rclone is not installed (./dev.sh test installs it)",
)

NAME = "shop_backup_20261205_000000.sql.gz"


def names_on(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("kind", ["webdav", "sftp"])
def test_round_trip_records_the_hash_and_never_overwrites(served, kind):
    """`rclone serve webdav` / `rclone serve sftp` of a folder on loopback (the remote is named `dav` in both)."""
    folder, start = served
    target = RcloneTarget(parse_rclone_url("rclone:dav:"), start(kind=kind))
    data = os.urandom(300_000)
    stored = target.put(NAME, (data[i : i + 50_000] for i in range(0, len(data), 50_000)))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert names_on(folder) == [NAME, f"{NAME}.sha256"]
    [listed] = target.list()
    assert (listed.name, listed.size, listed.sha256) == (NAME, len(data), hashlib.sha256(data).hexdigest())
    assert b"".join(target.open(NAME)) == data
    # plain sha256sum reads the companion record
    assert subprocess.run(["sha256sum", "-c", f"{NAME}.sha256"], cwd=folder, capture_output=True).returncode == 0
    with pytest.raises(StorageError, match="never overwritten"):
        target.put(NAME, [b"other"])
    assert (folder / NAME).read_bytes() == data
    target.delete(NAME)
    assert names_on(folder) == []


def test_a_source_failing_mid_upload_leaves_no_backup_named_object(tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    target = RcloneTarget(
        parse_rclone_url(f"rclone:loc:{folder}"),
        {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RCLONE_CONFIG_LOC_TYPE": "local"},
    )

    def dump():
        yield os.urandom(200_000)
        raise RuntimeError("pg_dump exited with status 1")

    with pytest.raises(RuntimeError, match="pg_dump exited"):
        target.put(NAME, dump())
    assert names_on(folder) == []


def test_a_remote_refusing_writes_fails_clearly_and_stores_nothing(served):
    folder, start = served
    target = RcloneTarget(parse_rclone_url("rclone:dav:"), start(read_only=True))
    with pytest.raises(StorageError, match="rclone rcat failed"):
        target.put(NAME, [os.urandom(100_000)])
    assert names_on(folder) == []


def test_only_rclone_variables_are_kept_for_the_child_and_its_flags_hold_no_secret(served):
    _, start = served
    env = start() | {"RCLONE_CONFIG_DAV_PASS": "hunter2"}
    target = RcloneTarget(parse_rclone_url("rclone:dav:"), env)
    assert "SECRET_NOT_FOR_RCLONE" not in target.env
    assert not any("hunter2" in flag for flag in target.flags)


@pytest.mark.parametrize("url", ["rclone:", "rclone:nocolon", "s3://b/p", "rclone:bad name:x"])
def test_bad_urls_say_what_is_wrong(url):
    with pytest.raises(ValueError):
        parse_rclone_url(url)


@pytest.mark.parametrize("listening", [False, True], ids=["unreachable", "stalling"])
def test_a_remote_that_is_down_or_stalls_fails_in_bounded_time(tmp_path, listening):
    """Unreachable: a free port nobody listens on. Stalling: a listening socket nobody ever answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        if listening:
            silent.listen(16)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "RCLONE_CONFIG_DAV_TYPE": "webdav",
            "RCLONE_CONFIG_DAV_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/",
        }
        target = RcloneTarget(parse_rclone_url("rclone:dav:x"), env, connect_timeout_s=2, stall_timeout_s=2, retries=1)
        began = time.monotonic()
        with pytest.raises(StorageError, match="rclone lsjson failed"):
            target.put(NAME, [b"data"])
        assert time.monotonic() - began < 20  # 2 s bounds, one retry: seconds, not rclone's 5-minute default


def test_verify_and_restore_from_a_webdav_remote_give_an_identical_database(served, backup, pg_cluster):
    folder, start = served
    env = start()
    target = RcloneTarget(parse_rclone_url("rclone:dav:backups"), env)
    data = backup.read_bytes()
    stored = target.put(NAME, [data[i : i + 65536] for i in range(0, len(data), 65536)])
    url = f"rclone:dav:backups/{NAME}"

    verified = run_cli("verify", url, env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"sha256:           {stored.sha256}" in verified.stdout and "stored sha256:    matches" in verified.stdout

    restored = run_cli("restore", url, "--target-url", pg_cluster.url("rich_from_rclone"), "--create", env=env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_from_rclone") == snapshot(pg_cluster, "rich")

    (folder / "backups" / f"{NAME}.sha256").write_text("0" * 64 + f"  {NAME}\n")
    changed = run_cli("verify", url, env=env)
    assert changed.returncode != 0 and "changed after it was stored" in changed.stderr
    missing = run_cli("verify", "rclone:dav:backups/nope.sql.gz", env=env)
    assert missing.returncode != 0 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_the_docs_rclone_commands_run_as_written(rich_db, tmp_path):
    text = (REPO / "docs/storage.md").read_text()
    block = text.split("<!-- doc-test: rclone -->\n```sh\n", 1)[1].split("```", 1)[0]
    env = {
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": rich_db,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "stored sha256:    matches" in done.stdout
    assert "storage write: ok" in done.stdout and "result: ok — this process can store backups" in done.stdout
    assert " stored-run " in done.stdout  # `history` read the run back from offsite/_history/
    [name] = [n for n in os.listdir(tmp_path / "offsite") if n.endswith(".sql.gz")]
    assert remote_files(tmp_path / "offsite") == [name, f"{name}.owner.json", f"{name}.sha256"]
    assert f"{name}  kept: last #1" in done.stdout
