"""BACKUP_STORAGE_FORMAT=dedup as a user runs it (`upload`, `list`, `verify`, `restore`, `prune`), against a real
PostgreSQL and moto's S3 server on loopback: chunks stored once, manifests written last, every chunk checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest


from tests import REPO
from tests.databases import snapshot
from tests.http_client import gzip_is_valid
from tests.processes import kill_upload, pg_dump_pids, restore_cli, run_cli, wait_until
from tests.restore_requests import follow
from tests.dedup_support import (
    restores_identical,
    DEDUP_KEY,
    SEVERAL_CHUNKS,
    chunk_keys,
    dedup_env,
    manifest_of,
    manifests,
    reading_env,
    upload,
)
from tests.s3support import incomplete_uploads, s3_env, stored_metadata


def test_an_unchanged_database_resends_no_chunk_and_only_its_first_and_last_chunks_are_new(s3, moto_s3, fresh_db):
    """The second upload of an unchanged database sends none of the first one's chunks again; every chunk but its
    first and last is the first one's, and at most two (under 1000 bytes) are new."""
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    upload(env)
    first_chunks = chunk_keys(client, bucket, name)
    assert len(first_chunks) >= 5, first_chunks
    written = {k: client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in first_chunks}
    time.sleep(1.1)  # backup names (and LastModified) have a one-second resolution
    upload(env)
    rewritten = [k for k in first_chunks if client.head_object(Bucket=bucket, Key=k)["LastModified"] != written[k]]
    assert rewritten == []  # no chunk was sent again
    # pg_dump (since 13.22, 14.19, 15.14, 16.10, 17.6) writes a random `\\restrict` key in its first and last
    # lines: each is a tiny chunk of its own, new every time; every other chunk is reused
    new = set(chunk_keys(client, bucket, name)) - set(first_chunks)
    assert len(new) <= 2, new
    first, second = (manifest_of(client, bucket, k) for k in manifests(client, bucket, name))
    assert first["chunks"][1:-1] == second["chunks"][1:-1]
    recorded = stored_metadata(client, bucket, manifests(client, bucket, name)[1])
    assert int(recorded["dedup-new-chunks"]) == len(new) and int(recorded["dedup-chunks"]) == len(second["chunks"])
    assert int(recorded["dedup-new-bytes"]) < 1000  # two lines of SQL, not two 1 MiB chunks
    assert incomplete_uploads(client, bucket) == []

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(line.split()[0].endswith(".sql.dedup") for line in lines)
    checked = run_cli("check", env={**env, "ADMIN_TOKEN": "t" * 20})
    assert f"format: dedup — chunks under s3://{bucket}/backups/_chunks/{name}/" in checked.stdout, checked.stdout
    assert DEDUP_KEY not in checked.stdout + checked.stderr
    # each one's full size (all its chunks, compressed), not its manifest's
    assert [int(line.split()[1]) for line in lines] == [sum(c[2] for c in m["chunks"]) for m in (second, first)]


def test_a_slightly_changed_database_uploads_few_new_chunks(s3, moto_s3, fresh_db, pg_cluster):
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    upload(env)
    before = set(chunk_keys(client, bucket, name))
    with pg_cluster.connect(name) as db:
        db.execute("UPDATE items SET note = 'changed' WHERE id BETWEEN 50000 AND 50010")
    time.sleep(1.1)
    second = upload(env)
    new = set(chunk_keys(client, bucket, name)) - before
    # the header and trailer chunks (pg_dump's random key, its times), the chunk that changed, and the table's end
    # (where PostgreSQL put the updated rows)
    assert 3 <= len(new) <= 5, (len(new), len(before))
    recorded = stored_metadata(client, bucket, second.removeprefix(f"s3://{bucket}/"))
    assert int(recorded["dedup-new-bytes"]) < 0.5 * int(recorded["dedup-stored-bytes"]), recorded
    restored = run_cli(
        "restore", second, "--target-url", pg_cluster.url(f"{name}_r"), "--create", env=reading_env(moto_s3.endpoint)
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, f"{name}_r") == snapshot(pg_cluster, name)


def test_a_dedup_backup_of_the_rich_database_restores_identical(s3, moto_s3, rich_db, pg_cluster):
    client, bucket = s3
    # RESTORE_DRILL_URL: the upload drills the new backup, restoring it from its chunks
    env = dedup_env(moto_s3.endpoint, bucket, rich_db, RESTORE_DRILL_URL=pg_cluster.url("postgres"))
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    assert "restore drill ok" in done.stderr and "dump-time metadata" in done.stderr, done.stderr
    # the first upload: every chunk is new (the header and trailer lines that change every time among them)
    counted = re.search(r"dedup: (\d+) chunks \(\d+ bytes of SQL, \d+ stored\), (\d+) of them new", done.stderr)
    assert counted and int(counted[1]) == int(counted[2]) >= 3, done.stderr
    url = done.stdout.split()[1]
    (key,) = manifests(client, bucket, "rich")
    assert url == f"s3://{bucket}/{key}"
    manifest = manifest_of(client, bucket, key)
    assert manifest["table_rows"] and manifest["server_version"] and manifest["pg_dump_version"]
    verified = run_cli("verify", url, env=reading_env(moto_s3.endpoint))
    assert verified.returncode == 0, verified.stderr
    assert "(dedup)" in verified.stdout and "stored sha256:    matches" in verified.stdout
    restored = run_cli(
        "restore", url, "--target-url", pg_cluster.url("rich_from_dedup"), "--create", env=reading_env(moto_s3.endpoint)
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_from_dedup") == snapshot(pg_cluster, "rich")
    # the parallel restore reads the same checked stream
    parallel = restore_cli(
        url,
        pg_cluster.url("rich_from_dedup_jobs"),
        "--create",
        "--jobs",
        "3",
        env=reading_env(moto_s3.endpoint),
    )
    assert parallel.returncode == 0, parallel.stderr
    assert snapshot(pg_cluster, "rich_from_dedup_jobs") == snapshot(pg_cluster, "rich")


def tamper(client, bucket: str, key: str) -> None:
    """Replace a stored chunk by another chunk's valid compressed bytes: it inflates, but is not what its id names."""
    import zlib

    data = zlib.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    flipped = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
    client.put_object(Bucket=bucket, Key=key, Body=zlib.compress(flipped))


def test_a_changed_chunk_fails_verify_and_restore_naming_it_and_nothing_is_created(s3, moto_s3, fresh_db, pg_cluster):
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    stored = upload(dedup_env(moto_s3.endpoint, bucket, url))
    manifest = manifest_of(client, bucket, manifests(client, bucket, name)[0])
    middle = manifest["chunks"][len(manifest["chunks"]) // 2][0]
    tamper(client, bucket, f"backups/_chunks/{name}/{middle}")

    verified = run_cli("verify", stored, env=reading_env(moto_s3.endpoint))
    assert verified.returncode == 1
    assert middle in verified.stderr and "its HMAC differs" in verified.stderr, verified.stderr

    target = f"{name}_tampered"
    restored = run_cli(
        "restore", stored, "--target-url", pg_cluster.url(target), "--create", env=reading_env(moto_s3.endpoint)
    )
    assert restored.returncode == 1 and middle in restored.stderr, restored.stderr
    with pg_cluster.connect() as db:
        assert db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (target,)).fetchone()[0] == 0

    # without the key, each chunk's id cannot be checked, but the whole SQL's sha256 still catches it
    keyless = run_cli("verify", stored, env=s3_env(moto_s3.endpoint))
    assert keyless.returncode == 1 and "the reassembled SQL has sha256" in keyless.stderr, keyless.stderr
    assert "BACKUP_DEDUP_KEY is not set" in keyless.stderr


def test_a_missing_chunk_is_named(s3, moto_s3, fresh_db):
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    stored = upload(dedup_env(moto_s3.endpoint, bucket, url))
    manifest = manifest_of(client, bucket, manifests(client, bucket, name)[0])
    last = manifest["chunks"][-1][0]
    client.delete_object(Bucket=bucket, Key=f"backups/_chunks/{name}/{last}")
    verified = run_cli("verify", stored, env=reading_env(moto_s3.endpoint))
    assert verified.returncode == 1 and f"({last}) cannot be read" in verified.stderr and "missing" in verified.stderr


def test_the_wrong_key_is_told_apart_from_damage(s3, moto_s3, fresh_db):
    client, bucket = s3
    _, url = fresh_db("dd", "CREATE TABLE t AS SELECT 1 AS x;")
    stored = upload(dedup_env(moto_s3.endpoint, bucket, url))
    verified = run_cli(
        "verify", stored, env={**s3_env(moto_s3.endpoint), "BACKUP_DEDUP_KEY": "another-key-" + "z" * 20}
    )
    assert verified.returncode == 1 and "BACKUP_DEDUP_KEY is not the key" in verified.stderr, verified.stderr
    assert "another-key" not in verified.stderr + verified.stdout


@pytest.mark.parametrize("kill", ["SIGKILL pg_dump", "SIGTERM upload"])
def test_a_dump_killed_mid_way_leaves_no_manifest(kill, s3, moto_s3, fault_proxy, big_db, pg_cluster):
    """Chunks go through a proxy that delays each request (a slow link) so the kill lands mid-dump."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.add(lambda method, path, query: method == "PUT" and "/_chunks/" in path, ["slow:0.3"], repeat_last=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "backup_svc", "upload"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            **dedup_env(proxy.endpoint, bucket, big_db, BACKUP_RETENTION="last=1"),
        },
    )
    try:
        assert wait_until(lambda: chunk_keys(client, bucket, "big") and pg_dump_pids(pg_cluster), 60), (
            "the upload never stored a chunk"
        )
        kill_upload(kill, process, pg_cluster, "big")
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == {"SIGTERM upload": 143}.get(kill, 1), err
    assert manifests(client, bucket, "big") == []
    assert chunk_keys(client, bucket, "big")  # the chunks already sent stay until a collection finds them old
    assert incomplete_uploads(client, bucket) == []
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)


def test_retention_collects_exactly_the_chunks_no_kept_backup_needs(s3, moto_s3, fresh_db, pg_cluster):
    from datetime import datetime, timedelta, timezone

    from backup_svc.storage.location import BackupNames, StorageLocation
    from backup_svc.storage.ownership import Owner
    from backup_svc.storage.prune import prune
    from backup_svc.storage.retention import parse_retention
    from tests.s3support import cluster_identity

    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    upload(env)
    with pg_cluster.connect(name) as db:  # most chunks change: the first backup's become garbage once it goes
        db.execute("UPDATE items SET note = 'changed' WHERE id % 3 = 0")
    time.sleep(1.1)
    kept = upload(env)
    first, second = (manifest_of(client, bucket, k) for k in manifests(client, bucket, name))
    orphan = "0" * 64  # what a failed upload leaves: a chunk no manifest names
    client.put_object(Bucket=bucket, Key=f"backups/_chunks/{name}/{orphan}", Body=b"x")
    only_first = {c[0] for c in first["chunks"]} - {c[0] for c in second["chunks"]}
    assert only_first

    # `prune` now: the first manifest goes; every chunk is younger than the grace period, so all stay
    pruned = run_cli("prune", env={**env, "BACKUP_RETENTION": "last=1"})
    assert pruned.returncode == 0, pruned.stderr
    assert manifests(client, bucket, name) == [kept.removeprefix(f"s3://{bucket}/")]
    assert f"kept {len(only_first) + 1} that no backup names yet" in pruned.stdout, pruned.stdout
    assert {k.rsplit("/", 1)[1] for k in chunk_keys(client, bucket, name)} >= only_first | {orphan}

    # a day and more later: exactly the kept backup's chunks are left
    owner = Owner(name, name, cluster_identity(pg_cluster))
    report = prune(
        client,
        StorageLocation(bucket, "backups/"),
        BackupNames(name),
        owner,
        parse_retention("last=1"),
        now=datetime.now(timezone.utc) + timedelta(days=1, minutes=5),
    )
    assert report.failed == []
    assert {k.rsplit("/", 1)[1] for k in chunk_keys(client, bucket, name)} == {c[0] for c in second["chunks"]}
    assert sorted(report.chunks.deleted) == sorted(only_first | {orphan})

    restored = run_cli(
        "restore", kept, "--target-url", pg_cluster.url(f"{name}_kept"), "--create", env=reading_env(moto_s3.endpoint)
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, f"{name}_kept") == snapshot(pg_cluster, name)
    verified_all = run_cli("verify", kept, env=reading_env(moto_s3.endpoint))
    assert verified_all.returncode == 0, verified_all.stderr


def test_a_manifest_that_cannot_be_read_stops_the_collection(s3, moto_s3, fresh_db, pg_cluster):
    from datetime import datetime, timedelta, timezone

    from backup_svc.storage.dedup.collect import collect_chunks
    from backup_svc.storage.client import StorageError
    from backup_svc.storage.location import StorageLocation

    client, bucket = s3
    name, url = fresh_db("dd", "CREATE TABLE t AS SELECT 1 AS x;")
    upload(dedup_env(moto_s3.endpoint, bucket, url))
    before = chunk_keys(client, bucket, name)
    client.put_object(Bucket=bucket, Key=f"backups/{name}_backup_20260101_000000.sql.dedup", Body=b"not json")
    with pytest.raises(StorageError, match="no chunk was deleted"):
        collect_chunks(
            client, StorageLocation(bucket, "backups/"), name, now=datetime.now(timezone.utc) + timedelta(days=2)
        )
    assert chunk_keys(client, bucket, name) == before


def test_serve_stores_lists_and_restores_a_dedup_backup(s3, moto_s3, start_service, fresh_db, pg_cluster):
    """`serve` with dedup: a stored backup taken now, listed as one backup, downloadable as a .sql.gz rebuilt from its
    chunks, restored from the API identical to its source."""
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    service = start_service(
        DATABASE_URL=url, **{k: v for k, v in dedup_env(moto_s3.endpoint, bucket, url).items() if k != "DATABASE_URL"}
    )
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    progress = started.json()["progress_url"]
    assert wait_until(lambda: service.request("GET", progress, service.auth()).json()["state"] != "running", 120)
    assert service.request("GET", progress, service.auth()).json()["state"] == "done"
    (key,) = manifests(client, bucket, name)
    listed = service.request("GET", "/api/v1/stored", service.auth()).json()["backups"]
    manifest = manifest_of(client, bucket, key)
    assert [(b["name"], b["size"]) for b in listed] == [
        (key.removeprefix("backups/"), sum(c[2] for c in manifest["chunks"]))
    ]

    download = service.request("GET", f"/api/v1/stored/{listed[0]['name']}", service.auth())
    assert download.status == 200 and gzip_is_valid(download.body)  # rebuilt from its chunks (test_dedup_get.py)

    report = follow(service, {"backup": listed[0]["name"], "mode": "new"}, timeout_s=120)  # the dashboard's restore
    assert report["state"] == "done", report
    assert report["counts_from"] == "dump-time metadata"
    assert snapshot(pg_cluster, report["target"]) == snapshot(pg_cluster, name)
    with pg_cluster.connect() as db:
        db.execute(f'DROP DATABASE "{report["target"]}" WITH (FORCE)')


def test_dedup_on_an_rclone_remote_is_refused_before_anything_runs(tmp_path, rich_db):
    """Not built for rclone remotes: `upload` says so in one line rather than store .sql.gz files instead."""
    done = run_cli(
        "upload",
        env={
            "DATABASE_URL": rich_db,
            "BACKUP_STORAGE_URL": f"rclone:local:{tmp_path}",
            "BACKUP_STORAGE_FORMAT": "dedup",
            "BACKUP_DEDUP_KEY": DEDUP_KEY,
        },
    )
    assert done.returncode == 2, done.stderr
    assert "only 'sqlgz' is supported on rclone remotes" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_prune_during_a_running_upload_is_refused_and_loses_nothing(s3, moto_s3, fault_proxy, fresh_db, pg_cluster):
    """The collection's safety against a concurrent upload is the upload lock: `prune` refuses (exit 75, "prune again
    when it is done") while an upload holds it; it does not wait. The upload still finishes and restores identical.
    Chunks go through a proxy that delays each PUT (a slow link) so the prune lands mid-upload."""
    client, bucket = s3
    proxy, _ = fault_proxy
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    upload(dedup_env(moto_s3.endpoint, bucket, url))
    with pg_cluster.connect(name) as db:  # every chunk changes: the next upload sends them all, slowly
        db.execute("UPDATE items SET note = 'changed ' || id")
    proxy.add(lambda method, path, query: method == "PUT" and "/_chunks/" in path, ["slow:1.5"], repeat_last=True)
    time.sleep(1.1)
    env = dedup_env(proxy.endpoint, bucket, url, BACKUP_RETENTION="last=1")
    running = subprocess.Popen(
        [sys.executable, "-m", "backup_svc", "upload"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )
    try:
        before = len(chunk_keys(client, bucket, name))
        assert wait_until(lambda: len(chunk_keys(client, bucket, name)) > before, 60), "no chunk was sent"
        pruned = run_cli("prune", env=dedup_env(moto_s3.endpoint, bucket, url, BACKUP_RETENTION="last=1"))
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
    assert pruned.returncode == 75 and "prune again when it is done" in pruned.stderr, pruned.stderr
    assert running.returncode == 0, err
    restored = restore_cli(
        out.split()[1],
        pg_cluster.url(f"{name}_r"),
        "--create",
        env=reading_env(moto_s3.endpoint),
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, f"{name}_r") == snapshot(pg_cluster, name)


def test_a_collection_stopped_half_way_is_finished_by_the_next(s3, moto_s3, fault_proxy, fresh_db, pg_cluster):
    """Deletes of chunks are refused (403) after the first two — a collection that stops half-way; the next one,
    without the fault, deletes the rest. Every chunk the kept backup needs is there after each collection, and it
    verifies at the end."""
    from datetime import datetime, timedelta, timezone

    from backup_svc.storage.dedup.collect import collect_chunks
    from backup_svc.storage.location import StorageLocation

    client, bucket = s3
    proxy, proxied = fault_proxy
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    kept = upload(dedup_env(moto_s3.endpoint, bucket, url))
    needed = set(chunk_keys(client, bucket, name))
    orphans = [f"backups/_chunks/{name}/{i:064x}" for i in range(1, 6)]
    for key in orphans:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    proxy.add(
        lambda method, path, query: method == "DELETE" and "/_chunks/" in path,
        ["forward", "forward", "403"],
        repeat_last=True,
    )
    later = datetime.now(timezone.utc) + timedelta(days=2)
    first = collect_chunks(proxied, StorageLocation(bucket, "backups/"), name, now=later)
    assert len(first.deleted) == 2 and len(first.failed) == 3
    assert set(chunk_keys(client, bucket, name)) == needed | set(orphans[2:])
    second = collect_chunks(client, StorageLocation(bucket, "backups/"), name, now=later)
    assert len(second.deleted) == 3 and second.failed == []
    assert set(chunk_keys(client, bucket, name)) == needed
    verified = run_cli("verify", kept, env=reading_env(moto_s3.endpoint))
    assert verified.returncode == 0, verified.stderr


def test_a_week_of_nights_with_changes_each_restore_as_the_database_was(s3, moto_s3, fresh_db, pg_cluster):
    """Seven nightly backups share chunks: each night's manifest still restores exactly its night's database after
    the later ones (inserts, updates, deletes, a night without change, a new table, a rewritten table)."""
    client, bucket = s3
    name, url = fresh_db("dd", SEVERAL_CHUNKS)
    env = dedup_env(moto_s3.endpoint, bucket, url)
    changes = [
        "INSERT INTO items SELECT g, 'night two', NULL FROM generate_series(200001, 203000) g",
        "DELETE FROM items WHERE id <= 500; UPDATE items SET note = 'night three' WHERE id > 202000",
        None,  # nothing changed: the fourth backup is all known chunks
        "CREATE TABLE notes (id serial PRIMARY KEY, body text); "
        "INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 2000) g",
        "UPDATE items SET label = upper(label) WHERE id % 997 = 0; DELETE FROM notes WHERE id % 3 = 0",
        "ALTER TABLE items ADD COLUMN seen boolean NOT NULL DEFAULT false; CLUSTER items USING items_pkey",
    ]
    nights = []
    for number, change in enumerate([None, *changes], start=1):
        if change:
            with pg_cluster.connect(name) as db:
                db.execute(change)
        if number > 1:
            time.sleep(1.1)  # backup names have a one-second resolution
        stored = upload(env)
        nights.append(
            (
                stored,
                snapshot(pg_cluster, name),
                stored_metadata(client, bucket, stored.removeprefix(f"s3://{bucket}/")),
            )
        )
    assert len(manifests(client, bucket, name)) == 7
    new = [int(recorded["dedup-new-chunks"]) for _, _, recorded in nights]
    total = [int(recorded["dedup-chunks"]) for _, _, recorded in nights]
    # the unchanged night sent nothing but pg_dump's random `\\restrict` lines (two tiny chunks)
    assert new[0] == total[0] and new[3] <= 2 and int(nights[3][2]["dedup-new-bytes"]) < 1000, (new, total)
    assert sum(new[1:]) < 6 * total[0], (new, total)  # later nights shared chunks with earlier ones
    for number, (stored, expected, _) in enumerate(nights, start=1):
        target = f"{name}_night{number}"
        restores_identical(pg_cluster, stored, target, expected, env=reading_env(moto_s3.endpoint))
    snapshots = [expected for _, expected, _ in nights]
    assert all(snapshots[i] != snapshots[i + 1] for i in (0, 1, 3, 4, 5)) and snapshots[2] == snapshots[3]
