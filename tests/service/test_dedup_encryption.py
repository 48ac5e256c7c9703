"""BACKUP_STORAGE_FORMAT=dedup with BACKUP_AGE_RECIPIENTS (issue 28 item 4), against a real PostgreSQL, moto's S3
server and Debian's `age`: every chunk and the manifest age-encrypted, nights still sharing chunks, nothing of the
database readable in the bucket, reading refused clearly without the right identity."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import zlib
from datetime import datetime, timedelta, timezone

from tests.databases import snapshot
from tests.processes import run_cli, wait_until
from tests.s3support import all_keys, s3_env, stored_metadata
from tests.restore_requests import follow
from tests.dedup_support import restores_identical, DEDUP_KEY, SEVERAL_CHUNKS, chunk_keys, dedup_env, manifests, upload

MARKER = "cleartext-marker-dd-5e1b"  # a row value that must never be readable in the bucket
MARKED = (
    SEVERAL_CHUNKS
    + f"""
    CREATE TABLE secrets (id int PRIMARY KEY, note text NOT NULL);
    INSERT INTO secrets VALUES (1, '{MARKER}');
"""
)
SQL_HEADER = b"PostgreSQL database dump"


def age_decrypt(identity, data: bytes) -> bytes:
    done = subprocess.run(["age", "-d", "-i", str(identity)], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def readable(data: bytes) -> bytes:
    """The bytes as stored, and inflated too when they are zlib or gzip (so compression hides nothing)."""
    for wbits in (zlib.MAX_WBITS, 16 + zlib.MAX_WBITS):
        try:
            return data + zlib.decompress(data, wbits)
        except zlib.error:
            pass
    return data


def assert_nothing_readable(client, bucket: str) -> None:
    keys = all_keys(client, bucket)
    assert keys
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        seen = readable(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        seen += json.dumps(head.get("Metadata", {})).encode()
        assert MARKER.encode() not in seen and SQL_HEADER not in seen, key
        assert b"secrets" not in seen and b"table_rows" not in seen and b"rows-" not in seen, key


def test_encrypted_nights_share_chunks_restore_identical_and_reveal_nothing(
    s3, moto_s3, fresh_db, pg_cluster, age_keys
):
    client, bucket = s3
    name, url = fresh_db("dde", MARKED)
    identity = {"BACKUP_AGE_IDENTITY": str(age_keys["age"])}
    env = dedup_env(moto_s3.endpoint, bucket, url, BACKUP_AGE_RECIPIENTS=age_keys["age_public"])
    # night 1 is drilled by the upload itself (RESTORE_DRILL_URL): the drill decrypts with BACKUP_AGE_IDENTITY
    changes = [
        None,
        "UPDATE items SET note = 'night two' WHERE id BETWEEN 50000 AND 50010",
        "INSERT INTO items SELECT g, 'night three', NULL FROM generate_series(200001, 202000) g",
    ]
    nights = []
    for number, change in enumerate(changes, start=1):
        if change:
            with pg_cluster.connect(name) as db:
                db.execute(change)
            time.sleep(1.1)
        before = set(chunk_keys(client, bucket, name))
        extra = {**identity, "RESTORE_DRILL_URL": pg_cluster.url("postgres")} if number == 1 else {}
        done = run_cli("upload", env={**env, **extra})
        assert done.returncode == 0, done.stderr
        if number == 1:
            assert "restore drill ok" in done.stderr, done.stderr
        stored = done.stdout.split()[1]
        new = set(chunk_keys(client, bucket, name)) - before
        recorded = stored_metadata(client, bucket, stored.removeprefix(f"s3://{bucket}/"))
        assert recorded["encryption"] == "age" and int(recorded["dedup-new-chunks"]) == len(new)
        assert "sql-bytes" not in recorded and not any(k.startswith("rows") for k in recorded), recorded
        nights.append((stored, snapshot(pg_cluster, name), len(new), int(recorded["dedup-chunks"])))
    # the second night uploads only the changed chunks (header/trailer, the changed one, the table's end)
    assert nights[0][2] == nights[0][3] >= 5 and nights[1][2] <= 5, [n[2:] for n in nights]
    assert all(k.endswith(".age") for k in chunk_keys(client, bucket, name))
    assert_nothing_readable(client, bucket)

    # interop: Debian's `age` decrypts a chunk to zlib that inflates to plain SQL, and the manifest's sealed part
    first_manifest = json.loads(client.get_object(Bucket=bucket, Key=manifests(client, bucket, name)[0])["Body"].read())
    inner = json.loads(age_decrypt(age_keys["age"], base64.b64decode(first_manifest["sealed_age"])))
    assert sorted(c[0] for c in inner["chunks"]) == first_manifest["chunk_ids"] and inner["table_rows"]
    first_chunk = client.get_object(
        Bucket=bucket, Key=f"backups/_chunks/{name}/{inner['chunks'][0][0]}{first_manifest['chunk_suffix']}"
    )["Body"].read()
    assert SQL_HEADER in zlib.decompress(age_decrypt(age_keys["age"], first_chunk))

    reading = {**s3_env(moto_s3.endpoint), "BACKUP_DEDUP_KEY": DEDUP_KEY, **identity}
    for number, (stored, expected, _, _) in enumerate(nights, start=1):
        verified = run_cli("verify", stored, env=reading)
        assert verified.returncode == 0 and "stored sha256:    matches" in verified.stdout, verified.stderr
        target = f"{name}_n{number}"
        restores_identical(pg_cluster, stored, target, expected, env=reading)

    # retention + collection need no private key: the sealed manifests name their chunks in their envelope
    from backup_svc.storage.location import BackupNames, StorageLocation
    from backup_svc.storage.ownership import Owner
    from backup_svc.storage.prune import prune
    from backup_svc.storage.retention import parse_retention
    from tests.s3support import cluster_identity

    last = json.loads(client.get_object(Bucket=bucket, Key=manifests(client, bucket, name)[-1])["Body"].read())
    report = prune(
        client,
        StorageLocation(bucket, "backups/"),
        BackupNames(name),
        Owner(name, name, cluster_identity(pg_cluster)),
        parse_retention("last=1"),
        now=datetime.now(timezone.utc) + timedelta(days=1, minutes=5),
    )
    assert report.failed == []
    assert {k.rsplit("/", 1)[1] for k in chunk_keys(client, bucket, name)} == {
        i + last["chunk_suffix"] for i in last["chunk_ids"]
    }
    restored = run_cli(
        "restore", nights[-1][0], "--target-url", pg_cluster.url(f"{name}_kept"), "--create", env=reading
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, f"{name}_kept") == nights[-1][1]

    # other recipients (a rotated key): no chunk encrypted to the old ones is reused
    time.sleep(1.1)
    rotated = upload({**env, "BACKUP_AGE_RECIPIENTS": age_keys["other_public"]})
    recorded = stored_metadata(client, bucket, rotated.removeprefix(f"s3://{bucket}/"))
    assert recorded["dedup-new-chunks"] == recorded["dedup-chunks"], recorded


def test_a_wrong_or_missing_identity_is_refused_clearly_and_nothing_is_created(
    s3, moto_s3, fresh_db, pg_cluster, age_keys
):
    client, bucket = s3
    name, url = fresh_db("dde", MARKED)
    stored = upload(dedup_env(moto_s3.endpoint, bucket, url, BACKUP_AGE_RECIPIENTS=age_keys["age_public"]))
    reading = {**s3_env(moto_s3.endpoint), "BACKUP_DEDUP_KEY": DEDUP_KEY}
    for identity, said in (
        ({}, "set BACKUP_AGE_IDENTITY"),
        ({"BACKUP_AGE_IDENTITY": str(age_keys["other"])}, "matches none of its recipients"),
    ):
        verified = run_cli("verify", stored, env={**reading, **identity})
        assert verified.returncode == 1 and said in verified.stderr, verified.stderr
        target = f"{name}_refused"
        restored = run_cli(
            "restore", stored, "--target-url", pg_cluster.url(target), "--create", env={**reading, **identity}
        )
        assert restored.returncode == 1 and said in restored.stderr, restored.stderr
        assert "Traceback" not in restored.stderr + verified.stderr
        with pg_cluster.connect() as db:
            assert db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (target,)).fetchone()[0] == 0


def test_serve_stores_an_encrypted_dedup_backup_and_the_dashboard_restore_decrypts_it(
    s3, moto_s3, start_service, fresh_db, pg_cluster, age_keys
):
    """The web restore reads an encrypted dedup backup through storage/dedup/source.py with BACKUP_AGE_IDENTITY."""
    client, bucket = s3
    name, url = fresh_db("dde", MARKED)
    env = dedup_env(
        moto_s3.endpoint,
        bucket,
        url,
        BACKUP_AGE_RECIPIENTS=age_keys["age_public"],
        BACKUP_AGE_IDENTITY=str(age_keys["age"]),
    )
    service = start_service(DATABASE_URL=url, **{k: v for k, v in env.items() if k != "DATABASE_URL"})
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    progress = started.json()["progress_url"]
    assert wait_until(lambda: service.request("GET", progress, service.auth()).json()["state"] != "running", 120)
    assert service.request("GET", progress, service.auth()).json()["state"] == "done"
    assert_nothing_readable(client, bucket)
    (backup,) = [b["name"] for b in service.request("GET", "/api/v1/stored", service.auth()).json()["backups"]]

    report = follow(service, {"backup": backup, "mode": "new"}, timeout_s=120)  # the dashboard's restore
    assert report["state"] == "done", report
    assert snapshot(pg_cluster, report["target"]) == snapshot(pg_cluster, name)
    with pg_cluster.connect() as db:
        db.execute(f'DROP DATABASE "{report["target"]}" WITH (FORCE)')


def test_get_rebuilds_an_encrypted_dedup_backup_with_the_identity_and_the_dashboard_refuses_to_hand_it_out(
    s3, moto_s3, start_service, fresh_db, pg_cluster, age_keys, tmp_path
):
    """`get` decrypts each chunk with BACKUP_AGE_IDENTITY into a .sql.gz in the clear (no length is known in
    advance: the manifest records the sealed sizes); without the identity it fails naming it and leaves no
    file; the dashboard's Download answers 409 (the service does not serve decrypted chunks over HTTP)."""
    client, bucket = s3
    name, url = fresh_db("dde", MARKED)
    env = dedup_env(moto_s3.endpoint, bucket, url, BACKUP_AGE_RECIPIENTS=age_keys["age_public"])
    stored = upload(env)
    reading = {**s3_env(moto_s3.endpoint), "BACKUP_DEDUP_KEY": DEDUP_KEY}

    refused = run_cli("get", stored, "-o", str(tmp_path / "x.sql.gz"), env=reading)
    assert refused.returncode == 1 and "set BACKUP_AGE_IDENTITY" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and list(tmp_path.iterdir()) == []

    got = run_cli(
        "get", stored, "-o", str(tmp_path / "x.sql.gz"), env={**reading, "BACKUP_AGE_IDENTITY": str(age_keys["age"])}
    )
    assert got.returncode == 0, got.stderr
    tested = subprocess.run(["gzip", "-t", str(tmp_path / "x.sql.gz")], capture_output=True)
    assert tested.returncode == 0, tested.stderr
    restores_identical(pg_cluster, str(tmp_path / "x.sql.gz"), f"{name}_got", snapshot(pg_cluster, name))

    service = start_service(
        DATABASE_URL=url,
        BACKUP_AGE_IDENTITY=str(age_keys["age"]),
        **{k: v for k, v in env.items() if k != "DATABASE_URL"},
    )
    backup = stored.rsplit("/", 1)[1]
    download = service.request("GET", f"/api/v1/stored/{backup}", service.auth())
    assert download.status == 409, download.body[:300]
    assert b"age-encrypted dedup backup" in download.body and MARKER.encode() not in download.body
