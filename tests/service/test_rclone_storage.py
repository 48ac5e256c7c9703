"""`upload`, `list` and `prune` with BACKUP_STORAGE_URL=rclone:<remote>:<path>: real rclone (the `local`
backend, and `rclone serve webdav` on loopback), real PostgreSQL, the real CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from backup_svc.dump.pipeline import DumpBroken
from backup_svc.storage.rclone_run import upload
from backup_svc.storage.rclone_target import RcloneTarget, parse_rclone_url
from backup_svc.storage.location import BackupNames
from tests.databases import snapshot
from tests.freezable_proxy import FreezableProxy
from tests.processes import (
    UPLOAD_KILLS,
    pg_dump_pids,
    restore_cli,
    run_cli,
    start_cli,
    upload_killed_once_begun,
    wait_until,
)
from tests.s3support import remote_files

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)


def local_env(folder, database_url: str, **more) -> dict:
    return {
        "DATABASE_URL": database_url,
        "BACKUP_NAME": "shop",
        "BACKUP_STORAGE_URL": f"rclone:loc:{folder}",
        "RCLONE_CONFIG_LOC_TYPE": "local",
        "BACKUP_RETENTION": "",
        "BACKUP_AGE_RECIPIENTS": "",
        **more,
    }


def backups_in(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".sql.gz"))


def test_upload_list_restore_over_webdav(served, rich_db, pg_cluster):
    folder, start = served
    env = start() | {
        "DATABASE_URL": rich_db,
        "BACKUP_NAME": "shop",
        "BACKUP_STORAGE_URL": "rclone:dav:backups",
        "BACKUP_RETENTION": "",
        "BACKUP_AGE_RECIPIENTS": "",
    }
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    [name] = backups_in(folder / "backups")
    stored = (folder / "backups" / name).read_bytes()
    assert remote_files(folder / "backups") == [name, f"{name}.owner.json", f"{name}.sha256"]
    assert (folder / "backups" / f"{name}.sha256").read_text() == f"{hashlib.sha256(stored).hexdigest()}  {name}\n"
    record = json.loads((folder / "backups" / f"{name}.owner.json").read_text())
    assert record["written-by"] == "backup_svc" and record["database"] == "rich" and record["system-identifier"]
    assert done.stdout.strip() == f"{hashlib.sha256(stored).hexdigest()}  rclone:dav:backups/{name}"

    listed = run_cli("list", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[0] == name and str(len(stored)) in listed.stdout

    restored = run_cli(
        "restore", f"rclone:dav:backups/{name}", "--target-url", pg_cluster.url("rich_rclone_up"), "--create", env=env
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_rclone_up") == snapshot(pg_cluster, "rich")


def test_retention_deletes_only_this_services_old_backups(tmp_path, rich_db):
    folder = tmp_path / "remote"
    env = local_env(folder, rich_db)
    assert run_cli("upload", env=env).returncode == 0
    [first] = backups_in(folder)
    record = (folder / f"{first}.owner.json").read_text()
    # three older backups of ours (copies with older names), one not written by us, one dated in the future
    for stamp in ("20240101_000000", "20240201_000000", "20240301_000000", "20990101_000000"):
        old = f"shop_backup_{stamp}.sql.gz"
        shutil.copy(folder / first, folder / old)
        (folder / f"{old}.owner.json").write_text(record)
        (folder / f"{old}.sha256").write_text((folder / f"{first}.sha256").read_text().replace(first, old))
    (folder / "shop_backup_20240401_000000.sql.gz").write_bytes(b"someone else's file")

    dry = run_cli("prune", "--dry-run", env=env | {"BACKUP_RETENTION": "last=2"})
    assert dry.returncode == 0, dry.stderr
    assert "shop_backup_20240101_000000.sql.gz  would delete" in dry.stdout
    assert len(backups_in(folder)) == 6  # nothing deleted by a dry run

    done = run_cli("upload", env=env | {"BACKUP_RETENTION": "last=2"})
    assert done.returncode == 0, done.stderr
    newest = max(set(backups_in(folder)) - {"shop_backup_20990101_000000.sql.gz"})
    assert backups_in(folder) == sorted(
        {newest, first, "shop_backup_20240401_000000.sql.gz", "shop_backup_20990101_000000.sql.gz"}
    )
    kept = [newest, first, "shop_backup_20990101_000000.sql.gz"]  # each with its two companions
    assert remote_files(folder) == sorted(
        [
            *kept,
            *(f"{n}.owner.json" for n in kept),
            *(f"{n}.sha256" for n in kept),
            "shop_backup_20240401_000000.sql.gz",
        ]
    )  # the three deleted backups' companions went too
    assert not any(
        n.startswith("shop_backup_2024010") or n.startswith("shop_backup_2024020") for n in os.listdir(folder)
    )  # their companions went too
    listed = run_cli("list", env=env)
    assert "not listed: shop_backup_20240401_000000.sql.gz (no ownership record" in listed.stderr
    assert "not listed: shop_backup_20990101_000000.sql.gz" in listed.stderr


def test_a_remote_refusing_writes_stores_nothing(served, rich_db):
    folder, start = served
    env = start(read_only=True) | {
        "DATABASE_URL": rich_db,
        "BACKUP_NAME": "shop",
        "BACKUP_STORAGE_URL": "rclone:dav:backups",
        "BACKUP_AGE_RECIPIENTS": "",
    }
    done = run_cli("upload", env=env)
    assert done.returncode == 1
    assert "upload failed" in done.stderr and "rclone rcat failed" in done.stderr and "Traceback" not in done.stderr
    assert remote_files(folder) == []


def test_a_dump_that_breaks_mid_way_stores_nothing(tmp_path):
    """Fault injected: a dump that writes 300 KB and then breaks (as a killed pg_dump does)."""
    target = RcloneTarget(
        parse_rclone_url(f"rclone:loc:{tmp_path / 'r'}"), {**os.environ, "RCLONE_CONFIG_LOC_TYPE": "local"}
    )

    def dump(sink):
        for _ in range(300):
            sink.write(os.urandom(1024))
        raise DumpBroken("pg_dump exited with status 1")

    with pytest.raises(DumpBroken):
        upload(target, "shop", "shop_backup_20261205_000000.sql.gz", dump)
    assert not (tmp_path / "r").exists() or remote_files(tmp_path / "r") == []


def test_a_missing_database_stores_nothing(tmp_path, pg_cluster):
    done = run_cli("upload", env=local_env(tmp_path / "r", pg_cluster.url("no_such_db")))
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or remote_files(tmp_path / "r") == []


def test_an_encrypted_upload_stores_only_an_age_file_that_age_decrypts_and_restore_restores(
    tmp_path, rich_db, age_keys, pg_cluster
):
    """BACKUP_AGE_RECIPIENTS with a remote: `….sql.gz.age`, decrypted by Debian's `age` into the backup; the
    companion's sha256 is the age file's; the record holds no table names or row counts; with
    BACKUP_AGE_IDENTITY `verify` and `restore` read it back, without it `restore` says what is missing."""
    folder = tmp_path / "r"
    env = local_env(folder, rich_db, BACKUP_AGE_RECIPIENTS=age_keys["age_public"])
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    [name] = [n for n in remote_files(folder) if n.endswith(".sql.gz.age")]
    assert remote_files(folder) == [name, f"{name}.owner.json", f"{name}.sha256"]
    stored = (folder / name).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert (folder / f"{name}.sha256").read_text() == f"{hashlib.sha256(stored).hexdigest()}  {name}\n"
    record = json.loads((folder / f"{name}.owner.json").read_text())
    assert record["encryption"] == "age" and record["database"] == "rich"
    assert not any(k.startswith("rows") or k == "sql-bytes" for k in record), record
    assert "orders" not in (folder / f"{name}.owner.json").read_text()
    plain = subprocess.run(
        ["age", "-d", "-i", str(age_keys["age"]), str(folder / name)], capture_output=True, check=True
    ).stdout
    assert b"-- PostgreSQL database dump complete" in gzip.decompress(plain)[-300:]

    keyed = env | {"BACKUP_AGE_IDENTITY": age_keys["age"].read_text()}
    verified = run_cli("verify", f"rclone:loc:{folder}/{name}", env=keyed)
    assert verified.returncode == 0, verified.stderr
    unkeyed = run_cli(
        "restore", f"rclone:loc:{folder}/{name}", "--target-url", pg_cluster.url("rich_age_no"), "--create", env=env
    )
    assert unkeyed.returncode != 0 and "BACKUP_AGE_IDENTITY" in unkeyed.stderr and "Traceback" not in unkeyed.stderr
    restored = restore_cli(
        f"rclone:loc:{folder}/{name}",
        pg_cluster.url("rich_age_rclone"),
        "--create",
        env=keyed,
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_age_rclone") == snapshot(pg_cluster, "rich")
    listed = run_cli("list", env=env)
    assert listed.returncode == 0 and listed.stdout.split()[0] == name


def backup_named(folder, names) -> list[str]:
    """Names in the remote's folder that are (or are companions of) a backup's name."""
    return [
        n
        for n in os.listdir(folder)
        if BackupNames("big").time_of(n.removesuffix(".sha256").removesuffix(".owner.json"))
    ]


@pytest.mark.parametrize("kill", UPLOAD_KILLS)
def test_a_backup_killed_mid_upload_leaves_no_backup_named_object(kill, tmp_path, big_db, pg_cluster):
    """RCLONE_BWLIMIT (rclone's own flag, read from its environment) slows the remote so that the kill
    lands while rcat is writing the temporary object."""
    folder = tmp_path / "remote"
    env = local_env(folder, big_db, BACKUP_NAME="big", RCLONE_BWLIMIT="4M")
    upload = start_cli("upload", env=env)

    def begun():
        return (
            folder.is_dir() and any(n.startswith(".partial-") for n in os.listdir(folder)) and pg_dump_pids(pg_cluster)
        )

    out, err, expected = upload_killed_once_begun(kill, upload, begun, pg_cluster, "big")
    assert upload.returncode == expected, err
    assert "nothing was stored" in err and "Traceback" not in err
    assert remote_files(folder) == []  # not even the temporary object
    assert any(
        b'"outcome":"failed"' in event.read_bytes().replace(b" ", b"")
        for event in (folder / "_history").rglob("*.json")
    ), "the failed run is not in the history"
    assert out == ""
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)


def test_a_remote_stalling_mid_upload_fails_in_bounded_time_and_stores_nothing(served, big_db):
    """The webdav server sits behind a proxy that goes silent mid-upload (no FIN, no RST)."""
    folder, start = served
    dav = start()
    proxy = FreezableProxy(int(dav["RCLONE_CONFIG_DAV_URL"].rsplit(":", 1)[1].strip("/")))
    env = {
        **dav,
        "RCLONE_CONFIG_DAV_URL": f"{proxy.endpoint}/",
        "DATABASE_URL": big_db,
        "BACKUP_NAME": "big",
        "BACKUP_STORAGE_URL": "rclone:dav:backups",
        "BACKUP_STALL_TIMEOUT": "3",
        "RCLONE_BWLIMIT": "4M",
        "BACKUP_RETENTION": "",
        "BACKUP_AGE_RECIPIENTS": "",
    }
    try:
        upload = start_cli("upload", env=env)
        try:
            assert wait_until(lambda: (folder / "backups").is_dir() and remote_files(folder / "backups"), 60), (
                "the upload never started"
            )
            time.sleep(1)
            proxy.freeze()
            began = time.monotonic()
            out, err = upload.communicate(timeout=120)
            took = time.monotonic() - began
        finally:
            if upload.poll() is None:
                upload.kill()
        assert upload.returncode == 1, err
        assert "upload failed" in err and "nothing was stored" in err and "Traceback" not in err
        assert took < 90, f"a stalled remote took {took:.0f} s to fail"
        print(f"stall: failed after {took:.1f} s: {err.strip()}")
        assert backup_named(folder / "backups", "big") == []
        proxy.thaw()
        again = run_cli("upload", env={**env, "RCLONE_BWLIMIT": "off"})  # the next run cleans what was left
        assert again.returncode == 0, again.stderr
        [name] = backups_in(folder / "backups")
        assert remote_files(folder / "backups") == [name, f"{name}.owner.json", f"{name}.sha256"]
    finally:
        proxy.close()
