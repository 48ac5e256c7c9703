"""Stored backups encrypted with age, against a real PostgreSQL, moto's S3 server and Debian's `age` tool:
what is stored, interoperability both ways, refusals before anything is restored, failing closed."""

from __future__ import annotations

import gzip
import subprocess
import zlib

import pytest

from tests.databases import psql_into, snapshot
from tests.processes import restore_cli, run_cli
from tests.s3support import all_keys, incomplete_uploads, object_keys, s3_env, stored_metadata

AGE_MAGIC = b"age-encryption.org/v1\n"
MARKER = "cleartext-marker-7f3a9c"  # a row value that must never reach the bucket in the clear


@pytest.fixture
def keys(age_keys):
    return age_keys


@pytest.fixture(scope="module")
def marker_db(pg_cluster) -> str:
    return pg_cluster.create_database(
        "marked",
        f"""
        CREATE TABLE secrets (id int PRIMARY KEY, note text NOT NULL);
        INSERT INTO secrets VALUES (1, '{MARKER}'), (2, 'another row');
        CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 5000) g;
    """,
    )


def storage_env(endpoint: str, bucket: str, db_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(endpoint), **extra}


def recipients(keys, *which: str) -> str:
    return ",".join(keys[f"{w}_public"] for w in which)


def age_decrypt(identity, data: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["age", "-d", "-i", str(identity)], input=data, capture_output=True)


def psql_restore(pg_cluster, sql: bytes, dbname: str) -> None:
    """`… | gunzip | psql -v ON_ERROR_STOP=1` into a new database, as docs/encryption.md shows."""
    pg_cluster.create_database(dbname)
    done = psql_into(pg_cluster, dbname, input=sql)
    assert done.returncode == 0, done.stderr[-2000:]


def test_encrypted_upload_is_age_that_the_age_tool_and_restore_both_read(s3, moto_s3, rich_db, pg_cluster, keys):
    """The round trip of the rich database: upload encrypted to an age key and an SSH key; Debian's `age`
    decrypts it (with either key) into SQL psql restores, and `restore s3://…` with the identity too."""
    client, bucket = s3
    env = storage_env(moto_s3.endpoint, bucket, rich_db, BACKUP_AGE_RECIPIENTS=recipients(keys, "age", "ed25519"))
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    (key,) = object_keys(client, bucket)
    assert key.startswith("backups/rich_backup_") and key.endswith(".sql.gz.age")
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body.startswith(AGE_MAGIC)
    head = {"Metadata": stored_metadata(client, bucket, key)}
    import hashlib

    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == done.stdout.split()[0]
    # nothing read from the database's contents in the clear: no table names, row counts or SQL size
    assert not {"row-counts", "rows", "tables", "sql-bytes"} & set(head["Metadata"])
    assert head["Metadata"]["encryption"] == "age"
    assert keys["age_public"] in head["Metadata"]["age-recipients"]
    assert incomplete_uploads(client, bucket) == []

    # Debian's age decrypts what we stored, with the age key and with the SSH key
    for identity in (keys["age"], keys["ed25519"]):
        plain = age_decrypt(identity, body)
        assert plain.returncode == 0, plain.stderr
    psql_restore(pg_cluster, gzip.decompress(plain.stdout), "rich_age_tool")
    assert snapshot(pg_cluster, "rich_age_tool") == snapshot(pg_cluster, "rich")

    # our restore, straight from the bucket, with the identity as a file path
    url = f"s3://{bucket}/{key}"
    restored = restore_cli(
        url,
        pg_cluster.url("rich_from_age"),
        "--create",
        env={**s3_env(moto_s3.endpoint), "BACKUP_AGE_IDENTITY": str(keys["age"])},
    )
    assert restored.returncode == 0, restored.stderr
    assert snapshot(pg_cluster, "rich_from_age") == snapshot(pg_cluster, "rich")
    # and verify, with the SSH private key given as the value itself
    verified = run_cli(
        "verify", url, env={**s3_env(moto_s3.endpoint), "BACKUP_AGE_IDENTITY": keys["ed25519"].read_text()}
    )
    assert verified.returncode == 0, verified.stderr
    assert "stored sha256:    matches" in verified.stdout and "age, gzip" in verified.stdout

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "age → age1" in listed.stdout and "ssh-ed25519 SHA256:" in listed.stdout


def test_restore_reads_a_file_the_age_tool_encrypted(tmp_path, rich_db, pg_cluster, keys):
    """`age -r` (an age key) and `age -R` (an ssh-rsa public key file) → our `restore`; identities given as a
    value (AGE-SECRET-KEY-1…) and as an RSA private key file."""
    plain = tmp_path / "rich.sql.gz"
    assert run_cli("dump", "-o", str(plain), env={"DATABASE_URL": rich_db}).returncode == 0
    cases = [
        (["-r", keys["age_public"]], keys["age"].read_text()),
        (["-R", str(keys["rsa"]) + ".pub"], str(keys["rsa"])),
    ]
    for number, (how, identity) in enumerate(cases):
        encrypted = tmp_path / f"rich{number}.sql.gz.age"
        subprocess.run(["age", *how, "-o", str(encrypted), str(plain)], check=True)
        target = f"rich_age_made_{number}"
        done = restore_cli(
            str(encrypted),
            pg_cluster.url(target),
            "--create",
            env={"BACKUP_AGE_IDENTITY": identity},
        )
        assert done.returncode == 0, done.stderr
        assert snapshot(pg_cluster, target) == snapshot(pg_cluster, "rich")


def _tampered(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) - 70_000]  # a whole chunk short: ends on a chunk boundary-ish, as a cut copy does
    if kind == "flipped byte":
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
    return data


@pytest.mark.parametrize("kind", ["wrong identity", "truncated", "flipped byte", "no identity"])
def test_a_bad_encrypted_backup_is_refused_before_anything_is_restored(kind, tmp_path, rich_db, pg_cluster, keys):
    plain = tmp_path / "rich.sql.gz"
    assert run_cli("dump", "-o", str(plain), env={"DATABASE_URL": rich_db}).returncode == 0
    encrypted = tmp_path / "rich.sql.gz.age"
    data = subprocess.run(["age", "-r", keys["age_public"], str(plain)], check=True, capture_output=True).stdout
    assert len(data) > 200_000, "the test needs several 64 KiB age chunks"
    encrypted.write_bytes(_tampered(kind, data))
    identity = {"wrong identity": str(keys["other"]), "no identity": ""}.get(kind, str(keys["age"]))
    target = "refused_" + kind.replace(" ", "_")
    done = restore_cli(
        str(encrypted),
        pg_cluster.url(target),
        "--create",
        env={"BACKUP_AGE_IDENTITY": identity},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing was restored" in done.stderr
    expected = {
        "wrong identity": "encrypted to other keys",
        "no identity": "set BACKUP_AGE_IDENTITY",
        "truncated": "does not decrypt to intact data",
        "flipped byte": "does not decrypt to intact data",
    }
    assert expected[kind] in done.stderr
    with pg_cluster.connect() as db:  # --create never ran: the file was refused first
        assert db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (target,)).fetchone()[0] == 0


@pytest.mark.parametrize("command", ["upload", "check", "serve"])
@pytest.mark.parametrize("bad", ["age1notakey", "ssh-ed25519 AAAAnotbase64!", "AGE-SECRET-KEY-1QQQQ"])
def test_a_malformed_recipient_refuses_to_start(command, bad, s3, moto_s3, rich_db, keys):
    client, bucket = s3
    env = storage_env(
        moto_s3.endpoint,
        bucket,
        rich_db,
        ADMIN_TOKEN="t" * 20,
        PORT="1",
        BACKUP_AGE_RECIPIENTS=f"{keys['age_public']},{bad}",
    )
    done = run_cli(command, env=env)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    (line,) = [each for each in out.splitlines() if "BACKUP_AGE_RECIPIENTS" in each]
    if bad.startswith("AGE-SECRET"):
        assert "private key" in line and bad not in out  # never echoed
    else:
        assert bad[:12] in line
    assert "Traceback" not in out
    assert object_keys(client, bucket) == [] and incomplete_uploads(client, bucket) == []


def _cleartext_marker_in(data: bytes) -> bool:
    """The marker in the bytes themselves or in what they decompress to (gzip members, as far as they go)."""
    if MARKER.encode() in data:
        return True
    try:
        return MARKER.encode() in zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(data)
    except zlib.error:
        return False


def test_the_bucket_never_holds_the_cleartext_marker_row(s3, moto_s3, marker_db, keys):
    """Control first: a plain upload does hold the marker (so the scan can find it); then, with recipients,
    no stored object (nor its metadata) does."""
    client, bucket = s3
    plain_env = storage_env(moto_s3.endpoint, bucket, marker_db, BACKUP_STORAGE_URL=f"s3://{bucket}/plain")
    assert run_cli("upload", env=plain_env).returncode == 0
    (plain_key,) = object_keys(client, bucket)
    assert _cleartext_marker_in(client.get_object(Bucket=bucket, Key=plain_key)["Body"].read())

    control = set(all_keys(client, bucket))  # the plain run's object, its sha256 record and history events

    env = storage_env(moto_s3.endpoint, bucket, marker_db, BACKUP_AGE_RECIPIENTS=recipients(keys, "age", "rsa"))
    done = run_cli("upload", env=env)
    assert done.returncode == 0, done.stderr
    encrypted = [k for k in object_keys(client, bucket) if k.startswith("backups/")]
    assert encrypted and all(k.endswith(".sql.gz.age") for k in encrypted)
    for key in encrypted:
        obj = client.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
        assert body.startswith(AGE_MAGIC)
        assert not _cleartext_marker_in(body)
        assert MARKER not in repr(obj["Metadata"]) and "secrets" not in repr(obj["Metadata"])
    # every other object the encrypted run wrote (its sha256 record, its history events) too
    written = sorted(set(all_keys(client, bucket)) - control)
    assert set(encrypted) < set(written), written
    for key in written:
        obj = client.get_object(Bucket=bucket, Key=key)
        assert not _cleartext_marker_in(obj["Body"].read()), key
        assert MARKER not in repr(obj["Metadata"]), key


def test_a_mixed_bucket_lists_prunes_and_restores(s3, moto_s3, rich_db, pg_cluster, keys):
    """An older cleartext backup and newer encrypted ones under one prefix: all listed, retention counts
    them together, and both kinds restore."""
    import time

    client, bucket = s3
    base = storage_env(moto_s3.endpoint, bucket, rich_db)
    assert run_cli("upload", env=base).returncode == 0
    time.sleep(1.1)  # names carry the second
    env = {**base, "BACKUP_AGE_RECIPIENTS": keys["age_public"], "BACKUP_AGE_IDENTITY": str(keys["age"])}
    assert run_cli("upload", env=env).returncode == 0
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0].endswith(".sql.gz.age") and lines[1].split()[0].endswith(".sql.gz")
    assert lines[0].split()[4] == "age" and lines[1].split()[4] == "plain"
    for number, line in enumerate(lines):
        url = f"s3://{bucket}/backups/{line.split()[0]}"
        target = f"rich_mixed_{number}"
        done = run_cli("restore", url, "--target-url", pg_cluster.url(target), "--create", env=env)
        assert done.returncode == 0, done.stderr
        assert snapshot(pg_cluster, target) == snapshot(pg_cluster, "rich")
    time.sleep(1.1)
    pruned = run_cli("upload", env={**env, "BACKUP_RETENTION": "last=2"})
    assert pruned.returncode == 0, pruned.stderr
    names = [k.split("/", 1)[1] for k in object_keys(client, bucket)]
    assert len(names) == 2 and all(n.endswith(".sql.gz.age") for n in names)  # the oldest (plain) one went


def test_check_says_whether_encryption_is_on_and_the_identity_matches(rich_db, keys):
    env = {
        "DATABASE_URL": rich_db,
        "ADMIN_TOKEN": "t" * 20,
        "BACKUP_AGE_RECIPIENTS": recipients(keys, "age", "ed25519"),
    }
    matching = run_cli("check", env={**env, "BACKUP_AGE_IDENTITY": str(keys["ed25519"])})
    assert "encryption: on — stored backups are age-encrypted to 2 recipients" in matching.stdout
    assert "identity: ok" in matching.stdout and "ssh-ed25519 SHA256:" in matching.stdout
    other = run_cli("check", env={**env, "BACKUP_AGE_IDENTITY": str(keys["other"])})
    assert "identity: warning — BACKUP_AGE_IDENTITY matches none" in other.stdout
    off = run_cli("check", env={"DATABASE_URL": rich_db, "ADMIN_TOKEN": "t" * 20})
    assert "encryption: off" in off.stdout
    assert keys["age"].read_text().split("\n")[2] not in matching.stdout + other.stdout  # never the secret


def test_a_drill_decrypts_with_the_identity_and_says_plainly_when_it_has_none(s3, moto_s3, rich_db, pg_cluster, keys):
    """`upload` with RESTORE_DRILL_URL drills the new encrypted object: with the identity its rows are counted
    from the decrypted SQL and match; without one the drill fails saying it needs the private key."""
    client, bucket = s3
    env = storage_env(
        moto_s3.endpoint,
        bucket,
        rich_db,
        BACKUP_AGE_RECIPIENTS=keys["age_public"],
        RESTORE_DRILL_URL=pg_cluster.url("postgres"),
    )
    done = run_cli("upload", env={**env, "BACKUP_AGE_IDENTITY": str(keys["age"])})
    assert done.returncode == 0, done.stderr
    assert "restore drill ok" in done.stderr and "the backup's own COPY data" in done.stderr
    keyless = run_cli("drill", env=env)
    assert keyless.returncode == 1
    assert "the drill needs the private key" in keyless.stderr and "BACKUP_AGE_IDENTITY" in keyless.stderr
    assert "damaged" not in keyless.stderr
