"""Dashboard/API restores (POST /api/v1/restores) of age-encrypted stored backups, against a real
PostgreSQL, gunicorn, moto's S3 server and keys made by Debian's age-keygen: decrypted as they stream
with BACKUP_AGE_IDENTITY; without it, refused before anything is created."""

from __future__ import annotations

from tests.databases import snapshot
from tests.http_client import basic
from tests.processes import wait_until
from tests.service import test_restores
from tests.restore_requests import databases, post_json, store_backup, storage_env, wait_for_end

AGE_MAGIC = b"age-encryption.org/v1\n"
live = test_restores.live  # the fixture: a fresh copy of the rich database as the live one


def test_encrypted_backup_restores_into_a_new_database_with_the_identity(
    live, pg_cluster, s3, moto_s3, start_service, age_keys
):
    name, url = live
    client, bucket = s3
    service = start_service(
        DATABASE_URL=url,
        BACKUP_AGE_RECIPIENTS=age_keys["age_public"],
        BACKUP_AGE_IDENTITY=str(age_keys["age"]),
        **storage_env(moto_s3.endpoint, bucket),
    )
    backup = store_backup(service)
    assert backup.endswith(".sql.gz.age"), backup
    stored = client.get_object(Bucket=bucket, Key=f"db/{backup}")["Body"].read()
    assert stored.startswith(AGE_MAGIC)  # what is restored really is the encrypted object
    source = snapshot(pg_cluster, name)

    status, started, _ = post_json(
        service, "POST", "/api/v1/restores", {"backup": backup, "mode": "new"}, basic("admin", service.password)
    )
    assert status == 202, started
    report = wait_for_end(service, started["progress_url"])
    assert report["state"] == "done", report
    target = report["target"]
    # an encrypted object records no row counts: they come from the decrypted SQL
    assert report["counts_from"] == "the backup's own COPY data" and report["rows"] > 0
    assert snapshot(pg_cluster, target) == source
    assert snapshot(pg_cluster, name) == source


def test_encrypted_backup_without_identity_is_refused_and_nothing_is_created(
    live, pg_cluster, s3, moto_s3, start_service, age_keys
):
    name, url = live
    client, bucket = s3
    # recipients only: the service can store encrypted backups but holds no private key to read them
    service = start_service(
        DATABASE_URL=url, BACKUP_AGE_RECIPIENTS=age_keys["age_public"], **storage_env(moto_s3.endpoint, bucket)
    )
    backup = store_backup(service)
    assert backup.endswith(".sql.gz.age"), backup
    before = databases(pg_cluster)

    status, body, _ = post_json(
        service, "POST", "/api/v1/restores", {"backup": backup, "mode": "new"}, basic("admin", service.password)
    )
    assert status == 409, body
    assert "BACKUP_AGE_IDENTITY" in body["message"] and "Nothing was started" in body["message"], body
    assert databases(pg_cluster) == before  # no database created
    listed = service.request("GET", "/api/v1/restores", service.auth()).json()
    assert not any(job.get("backup") == backup for job in listed["restores"]), listed
    assert wait_until(
        lambda: any(
            e["event"] == "restore" and e["outcome"] == "refused"
            for e in service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
        ),
        15,
    )
