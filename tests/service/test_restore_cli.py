"""`restore SOURCE --replace`, `--list-kept`, `--undo`, `--drop` from a shell, as run inside the Railway
container or from a laptop: real PostgreSQL, the real command line, moto for a stored source."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.databases import DATA, snapshot
from tests.processes import run_cli
from tests.s3support import s3_env


def databases(cluster) -> set[str]:
    with cluster.connect() as db:
        return {name for (name,) in db.execute("SELECT datname FROM pg_database")}


def marker_rows(cluster, name: str) -> int:
    with cluster.connect(name) as db:
        return db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0]


@pytest.fixture
def live(pg_cluster, tmp_path):
    """A fresh copy of the rich database, its URL and a backup file of it taken with `dump`."""
    name = f"cli_{secrets.token_hex(3)}"
    url = pg_cluster.create_database(name, (DATA / "rich.sql").read_text())
    backup = tmp_path / "backup.sql.gz"
    result = run_cli("dump", "-o", str(backup), env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    yield name, url, backup
    with pg_cluster.connect() as db:
        for other in databases(pg_cluster):
            if other.startswith(name):
                db.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


def test_replace_list_undo_drop_from_a_shell(live, pg_cluster):
    name, url, backup = live
    env = {"DATABASE_URL": url}
    with pg_cluster.connect(name) as db:
        db.execute("INSERT INTO app.people (name, email) VALUES ('after-backup', 'after@x')")
    before = databases(pg_cluster)

    refused = run_cli("restore", str(backup), "--replace", env=env)  # no terminal, no --yes
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert databases(pg_cluster) == before and marker_rows(pg_cluster, name) == 1

    done = run_cli("restore", str(backup), "--replace", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert marker_rows(pg_cluster, name) == 0
    kept = next(d for d in databases(pg_cluster) - before)
    assert kept.startswith(f"{name}_before_restore_") and f"kept as {kept!r}" in done.stdout
    assert marker_rows(pg_cluster, kept) == 1

    listed = run_cli("restore", "--list-kept", env=env)
    assert listed.returncode == 0 and kept in listed.stdout and "before_restore" in listed.stdout

    undone = run_cli("restore", "--undo", kept, "--yes", env=env)
    assert undone.returncode == 0, undone.stderr
    assert marker_rows(pg_cluster, name) == 1
    second = next(d for d in databases(pg_cluster) - before)
    assert second != kept and marker_rows(pg_cluster, second) == 0

    assert run_cli("restore", "--drop", name, "--yes", env=env).returncode == 1, "never the live database"
    dropped = run_cli("restore", "--drop", second, "--yes", env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert databases(pg_cluster) == before


def test_replace_from_a_stored_object(live, pg_cluster, s3, moto_s3):
    name, url, backup = live
    client, bucket = s3
    env = {"DATABASE_URL": url, "BACKUP_STORAGE_URL": f"s3://{bucket}/db/", **s3_env(moto_s3.endpoint)}
    uploaded = run_cli("upload", env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    key = next(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith(".sql.gz"))
    source = snapshot(pg_cluster, name)
    with pg_cluster.connect(name) as db:
        db.execute("INSERT INTO app.people (name, email) VALUES ('after-backup', 'after@x')")
    done = run_cli("restore", f"s3://{bucket}/{key}", "--replace", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "sha256 as recorded" in done.stderr and "dump-time metadata" in done.stdout
    assert snapshot(pg_cluster, name) == source

    # The shell's replace is in the durable history beside the upload, as the dashboard's would be.
    shown = run_cli("history", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
    restores = [e for e in events if e.get("kind") == "restore" or (e.get("data") or {}).get("event") == "restore"]
    assert len(restores) == 1, events
    assert restores[0]["data"]["outcome"] == "ok" and restores[0]["data"]["mode"] == "replace", restores[0]
    assert restores[0]["data"]["database"] == name


def test_a_bad_file_changes_nothing(live, pg_cluster, tmp_path):
    name, url, backup = live
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(bytes(data))
    before, source = databases(pg_cluster), snapshot(pg_cluster, name)
    result = run_cli("restore", str(bad), "--replace", "--yes", env={"DATABASE_URL": url})
    assert result.returncode == 1 and "nothing was changed" in result.stderr, result.stderr
    assert databases(pg_cluster) == before and snapshot(pg_cluster, name) == source


@pytest.mark.parametrize(
    "argv",
    [["--list-kept", "--drop", "x"], ["x.sql.gz", "--replace", "--target-url", "postgresql://h/db"], ["--replace"]],
)
def test_bad_combinations_are_refused(argv, live):
    result = run_cli("restore", *argv, env={"DATABASE_URL": live[1]})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
