"""The storage permission check (`check`, `/api/v1/database`): each permission tried on the prefix,
nothing left behind, against moto's S3 server; denials injected by the proxy (moto allows everything)."""

from __future__ import annotations

import pytest

from backup_svc.storage.location import StorageLocation
from backup_svc.storage.probe import probe_storage
from tests.processes import run_cli
from tests.s3support import all_keys, incomplete_uploads, s3_env, seed_backup


def everything(client, bucket) -> tuple[list[str], list[dict]]:
    """Every object (`_history/` and `.sha256` records included: object_keys leaves those out) and every
    incomplete upload in the bucket."""
    return all_keys(client, bucket), incomplete_uploads(client, bucket)


def test_every_permission_is_tried_and_nothing_is_left_behind(s3, moto_s3, fault_proxy):
    client, bucket = s3
    seed_backup(client, bucket, "db/shop_backup_20261101_030000.sql.gz")
    before = everything(client, bucket)
    proxy, through_proxy = fault_proxy
    report = probe_storage(through_proxy, StorageLocation(bucket, "db/"), proxy.endpoint)
    assert report.ok, report.lines()
    assert report.as_json()["permissions"] == {"list": "ok", "delete": "ok", "abort": "ok", "put": "ok"}
    assert everything(client, bucket) == before
    calls = [(method, target.split("?")[0].split("/", 2)[-1], action) for method, target, action in proxy.log]
    # it really wrote, read and deleted under the prefix, and started and aborted a multipart upload
    assert any(m == "PUT" and k.startswith("db/backup_svc-check-") for m, k, _ in calls)
    assert any(m == "GET" and k.startswith("db/backup_svc-check-") for m, k, _ in calls)
    assert any(m == "POST" and "uploads" in t for m, t, _ in proxy.log)
    # and the other permissions: listing the prefix, deleting an object, aborting an upload that does not exist
    queries = [(method, key, target.partition("?")[2]) for (method, key, _), (_, target, _) in zip(calls, proxy.log)]
    assert any(m == "GET" and "list-type=2" in q and "prefix=db%2F" in q for m, _, q in queries), queries
    assert any(m == "DELETE" and k.startswith("db/backup_svc-check-") and not q for m, k, q in queries), queries
    assert any(m == "DELETE" and "uploadId=backup-svc-check" in q for m, _, q in queries), queries


@pytest.mark.parametrize(
    "denied, expected",
    [
        # DELETE without permission: no test object is written at all (it could not be removed)
        (
            lambda m, p, q: m == "DELETE" and "uploadId" not in q,
            {"list": "ok", "delete": "denied", "abort": "ok", "put": "not tried"},
        ),
        (
            lambda m, p, q: m == "DELETE" and "uploadId" in q,
            {"list": "ok", "delete": "ok", "abort": "denied", "put": "ok"},
        ),
        (lambda m, p, q: m == "PUT", {"list": "ok", "delete": "ok", "abort": "ok", "put": "denied"}),
        (
            lambda m, p, q: m == "GET" and "list-type" in q,
            {"list": "denied", "delete": "ok", "abort": "ok", "put": "ok"},
        ),
    ],
)
def test_a_missing_permission_is_named_and_nothing_is_left_behind(s3, fault_proxy, denied, expected):
    client, bucket = s3
    proxy, through_proxy = fault_proxy
    proxy.add(denied, ["403"], repeat_last=True)
    report = probe_storage(through_proxy, StorageLocation(bucket, "db/"), proxy.endpoint)
    assert report.as_json()["permissions"] == expected
    assert not report.ok and report.reachable
    assert everything(client, bucket) == ([], [])
    assert any("AccessDenied (HTTP 403)" in line for line in report.lines())


def test_unreachable_storage_is_said_so(s3):
    from backup_svc.pg.localcluster import free_port
    from backup_svc.storage.client import make_client

    endpoint = f"http://127.0.0.1:{free_port()}"
    report = probe_storage(make_client(s3_env(endpoint)), StorageLocation("bkt-nowhere", ""), endpoint)
    assert not report.reachable and not report.ok
    assert report.lines()[0].startswith(f"storage: unreachable — s3://bkt-nowhere/ at {endpoint}: Could not connect")


def test_check_reports_storage_permissions_and_schedule(s3, moto_s3, rich_db):
    client, bucket = s3
    env = {
        "DATABASE_URL": rich_db,
        "ADMIN_TOKEN": "t" * 20,
        "BACKUP_STORAGE_URL": f"s3://{bucket}/db",
        "BACKUP_SCHEDULE": "30 2 * * *",
        "BACKUP_RETENTION": "last=5",
        **s3_env(moto_s3.endpoint),
    }
    done = run_cli("check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"storage: ok — s3://{bucket}/db/ at {moto_s3.endpoint}: 0 stored backups" in out
    for permission in ("list", "delete", "abort", "put"):
        assert f"storage {permission}: ok" in out
    assert "schedule: 30 2 * * * — At 02:30 every day (UTC); next " in out
    assert "retention: last=5" in out
    assert env["AWS_SECRET_ACCESS_KEY"] not in out + done.stderr
    assert everything(client, bucket) == ([], [])


def test_check_names_a_missing_permission(s3, fault_proxy, rich_db):
    """The proxy answers 403 to every DELETE (moto itself allows everything)."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.add(lambda m, p, q: m == "DELETE", ["403"], repeat_last=True)
    env = {
        "DATABASE_URL": rich_db,
        "ADMIN_TOKEN": "t" * 20,
        "BACKUP_STORAGE_URL": f"s3://{bucket}/db",
        **s3_env(proxy.endpoint),
    }
    done = run_cli("check", env=env)
    assert done.returncode == 1
    assert "storage delete: denied — AccessDenied (HTTP 403): injected fault" in done.stdout
    assert "storage put: not tried — a test object could not be deleted afterwards" in done.stdout
    assert everything(client, bucket) == ([], [])


def test_the_database_endpoint_reports_storage(s3, moto_s3, rich_db, start_service):
    client, bucket = s3
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/db/",
        BACKUP_SCHEDULE="*/5 * * * *",
        **s3_env(moto_s3.endpoint),
    )
    body = service.request("GET", "/api/v1/database", service.auth()).json()
    storage = body["storage"]
    assert storage["url"] == f"s3://{bucket}/db/" and storage["endpoint"] == moto_s3.endpoint
    assert storage["reachable"] is True and storage["ok"] is True and storage["problems"] == []
    assert storage["permissions"] == {"list": "ok", "delete": "ok", "abort": "ok", "put": "ok"}
    assert storage["schedule"]["expression"] == "*/5 * * * *" and storage["schedule"]["next_run"].endswith("Z")
    assert storage["retention"] is None
    assert everything(client, bucket) == ([], [])


def test_the_database_endpoint_without_storage_says_null(rich_service):
    assert rich_service.request("GET", "/api/v1/database", rich_service.auth()).json()["storage"] is None
