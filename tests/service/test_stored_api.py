"""`/api/v1/stored`: the list, presigned links and "back up now", against moto's S3 server on loopback
and a real gunicorn + PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import time
import urllib.request
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.databases import LockedTable, waiting_dump_sessions
from tests.http_client import basic
from tests.processes import wait_until
from tests.s3support import SilentStorage, incomplete_uploads, object_keys, s3_env, seed_backup

SCHEDULE = "0 3 * * *"


def storage_env(endpoint: str, bucket: str, prefix: str = "db/", **extra: str) -> dict[str, str]:
    return {"BACKUP_STORAGE_URL": f"s3://{bucket}/{prefix}", **s3_env(endpoint), **extra}


def run_to_end(service, timeout_s: float = 90) -> dict:
    """POST /api/v1/stored and follow its progress until it ends; the final report."""
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    body = started.json()
    assert started.headers["Location"] == body["progress_url"] == f"/api/v1/backups/{body['id']}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = service.request("GET", body["progress_url"], service.auth()).json()
        if report["state"] != "running":
            return report
        time.sleep(0.2)
    raise AssertionError(f"the stored backup did not end within {timeout_s} s: {report}")


def fetch(url: str) -> tuple[int, dict, bytes]:
    """GET `url` with no credentials at all (as a browser following the redirect would)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


@pytest.fixture
def stored_service(s3, moto_s3, rich_db, start_service):
    client, bucket = s3
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_SCHEDULE=SCHEDULE,
        BACKUP_RETENTION="last=3,daily=7",
        **storage_env(moto_s3.endpoint, bucket),
    )
    return service, client, bucket


def test_back_up_now_then_list_then_download_through_the_presigned_link(stored_service):
    service, client, bucket = stored_service
    report = run_to_end(service)
    assert report["state"] == "done", report
    assert report["destination"] == "storage" and len(report["sha256"]) == 64

    listed = service.request("GET", "/api/v1/stored", service.auth())
    assert listed.status == 200, listed.body
    body = listed.json()
    (entry,) = body["backups"]
    assert entry["name"] == report["filename"] and entry["name"].startswith("rich_backup_")
    assert entry["sha256"] == report["sha256"]
    assert entry["size"] == report["bytes_sent"] > 0
    assert entry["server_version"] and entry["pg_dump_version"] and entry["sql_bytes"] > entry["size"]
    assert datetime.fromisoformat(entry["time"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
    assert object_keys(client, bucket) == [f"db/{entry['name']}"]
    assert body["storage"]["url"] == f"s3://{bucket}/db/"
    assert body["schedule"]["expression"] == SCHEDULE and body["schedule"]["next_run"].endswith("03:00:00Z")
    assert body["schedule"]["next_run_text"].startswith("next: ") and body["schedule"]["interval_s"] == 86400
    assert body["retention"]["setting"] == "last=3,daily=7" and "3 newest" in body["retention"]["description"]
    assert body["newest"]["name"] == entry["name"] and body["newest"]["stale"] is False
    assert body["last_run"]["outcome"] == "ok" and body["last_run"]["trigger"] == "by hand"
    assert body["last_failure"] is None
    assert set(body["notify"]) >= {"notifications", "last_drill", "staleness"}

    link = service.request("GET", f"/api/v1/stored/{entry['name']}", service.auth())
    assert link.status == 302
    assert link.headers["Cache-Control"] == "no-store"
    location = link.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert int(query["X-Amz-Expires"][0]) <= 600
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - signed_at).total_seconds()) < 60
    status, headers, data = fetch(location)
    assert status == 200
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert f'filename="{entry["name"]}"' in headers["Content-Disposition"]
    assert b"\n-- PostgreSQL database dump complete\n" in gzip.decompress(data)[-300:]

    # The link is a credential: it appears in no log line (access log, audit, errors). The access
    # line is written once the response is done: wait for it before reading the log.
    access = f'"GET /api/v1/stored/{entry["name"]} HTTP/1.1" 302'
    assert wait_until(lambda: access in service.log(), 10), service.log()[-2000:]
    log = service.log()
    assert query["X-Amz-Signature"][0] not in log and "X-Amz-" not in log
    assert '"event": "stored-download"' in log


def test_a_link_issued_before_the_service_stopped_still_downloads(stored_service):
    """The presigned link points at the bucket, not at this service: it works with the service gone,
    which is also why its transfer is not bound by any limit on the service's own requests."""
    service, client, bucket = stored_service
    name = "rich_backup_20261101_030000.sql.gz"
    digest = seed_backup(client, bucket, f"db/{name}")
    location = service.request("GET", f"/api/v1/stored/{name}", service.auth()).headers["Location"]
    service.stop()
    assert service.proc.poll() is not None
    status, _, data = fetch(location)
    assert status == 200 and hashlib.sha256(data).hexdigest() == digest


@pytest.mark.parametrize(
    "name",
    [
        "other_backup_20261101_030000.sql.gz",  # another database's backup under the same prefix
        "notes.txt",  # some other object under the prefix
        "rich_backup_20261101_030000.sql",  # not quite the pattern
        "rich_backup_20261199_030000.sql.gz",  # an impossible date
        "..%2Fsecret%2Frich_backup_20261101_030000.sql.gz",
    ],
)
def test_names_that_are_not_this_services_backups_are_refused(stored_service, name):
    service, client, bucket = stored_service
    for key in (
        "db/other_backup_20261101_030000.sql.gz",
        "db/notes.txt",
        "db/rich_backup_20261101_030000.sql",
        "secret/rich_backup_20261101_030000.sql.gz",
    ):
        seed_backup(client, bucket, key)
    reply = service.request("GET", f"/api/v1/stored/{name}", service.auth())
    assert reply.status == 404, reply.body
    assert "Location" not in reply.headers
    assert set(reply.json()) == {"error", "message"}


def test_a_backup_deleted_by_retention_is_refused(stored_service):
    """An expired backup (retention deleted it) gets 404, not a link to nothing."""
    service, client, bucket = stored_service
    name = "rich_backup_20261101_030000.sql.gz"
    seed_backup(client, bucket, f"db/{name}")
    assert service.request("GET", f"/api/v1/stored/{name}", service.auth()).status == 302
    client.delete_object(Bucket=bucket, Key=f"db/{name}")
    reply = service.request("GET", f"/api/v1/stored/{name}", service.auth())
    assert reply.status == 404 and "retention may have deleted it" in reply.json()["message"]


def test_the_endpoints_need_credentials(stored_service):
    service, client, bucket = stored_service
    seed_backup(client, bucket, "db/rich_backup_20261101_030000.sql.gz")
    for method, path in (
        ("GET", "/api/v1/stored"),
        ("GET", "/api/v1/stored/rich_backup_20261101_030000.sql.gz"),
        ("POST", "/api/v1/stored"),
    ):
        reply = service.request(method, path, basic("admin", "wrong-password-123456"))
        assert reply.status == 401, (method, path)
        assert "Location" not in reply.headers
    assert incomplete_uploads(client, bucket) == [] and len(object_keys(client, bucket)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
        {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
    ],
)
def test_post_from_anywhere_but_the_dashboard_is_refused(stored_service, headers):
    service, client, bucket = stored_service
    reply = service.request("POST", "/api/v1/stored", {**service.auth(), **headers})
    assert reply.status == 403, reply.body
    assert reply.json()["message"].startswith("Refused: ")
    time.sleep(0.5)
    assert incomplete_uploads(client, bucket) == [] and object_keys(client, bucket) == []
    assert '"event": "stored-backup"' in service.log() and '"outcome": "denied"' in service.log()


def test_post_from_the_dashboards_origin_is_accepted(stored_service):
    service, client, bucket = stored_service
    headers = {
        **service.auth(),
        "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Dest": "empty",
        "Origin": service.base_url,
    }
    reply = service.request("POST", "/api/v1/stored", headers)
    assert reply.status == 202, reply.body
    assert wait_until(lambda: object_keys(client, bucket), 60)


def test_a_second_backup_while_one_runs_gets_429(s3, moto_s3, fault_proxy, rich_db, start_service, pg_cluster):
    """Parts go through a proxy that slows them, so the first stored backup is still running. Then a download
    runs (its pg_dump waits on a locked table, holding its slot): a stored backup gets 429 although
    BACKUP_MAX_CONCURRENT=2 leaves a second slot free, as docs/api.md says ("any backup runs in this service")."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(3.0)
    service = start_service(DATABASE_URL=rich_db, BACKUP_MAX_CONCURRENT="2", **storage_env(proxy.endpoint, bucket))
    first = service.request("POST", "/api/v1/stored", service.auth())
    assert first.status == 202
    second = service.request("POST", "/api/v1/stored", service.auth())
    assert second.status == 429 and second.headers["Retry-After"]
    report = service.request("GET", first.json()["progress_url"], service.auth()).json()
    assert report["state"] == "running"
    assert wait_until(
        lambda: service.request("GET", first.json()["progress_url"], service.auth()).json()["state"] != "running", 60
    )
    assert service.request("GET", first.json()["progress_url"], service.auth()).json()["state"] == "done"

    # ... and while a download runs (a second slot is free for downloads, none for a stored backup)
    lock = LockedTable(pg_cluster, "rich", "app.cache")
    download = service.connection(timeout=60)
    try:
        download.request("GET", "/api/v1/backup", headers=service.auth())
        assert wait_until(lambda: waiting_dump_sessions(pg_cluster), 10), "the download's pg_dump never waited"
        during = service.request("POST", "/api/v1/stored", service.auth())
        assert during.status == 429 and during.headers["Retry-After"], during.body
    finally:
        lock.release()
    try:
        assert download.getresponse().status == 200  # the download itself went on once the lock was gone
    finally:
        download.close()
    assert len(object_keys(client, bucket)) == 1  # only the first stored backup


def test_slow_storage_gets_a_prompt_503_naming_the_endpoint_not_the_keys(moto_s3, rich_db, start_service):
    silent = SilentStorage().start()
    try:
        env = storage_env(silent.endpoint, "bkt-hangs")
        service = start_service(DATABASE_URL=rich_db, **env)
        for _ in range(2):  # the second request joins (or follows) the first's hanging call
            started = time.monotonic()
            reply = service.request("GET", "/api/v1/stored", service.auth())
            took = time.monotonic() - started
            assert reply.status == 503, reply.body
            assert took < 7, f"took {took:.1f} s"
            body = reply.json()
            assert body["error"] == "Service Unavailable"
            assert body["message"].startswith(f"The storage at {silent.endpoint} (s3://bkt-hangs/db/)")
            # the deadline, or (joining the first request's call) the client's own read timeout
            assert "did not answer within 5 s" in body["message"] or "Read timeout" in body["message"]
            assert env["AWS_SECRET_ACCESS_KEY"] not in reply.body.decode()
            assert env["AWS_ACCESS_KEY_ID"] not in reply.body.decode()
            assert body["storage"]["url"] == "s3://bkt-hangs/db/"
        assert service.request("GET", "/healthz").status == 200
    finally:
        silent.stop()


def test_storage_that_is_down_gets_a_prompt_503(rich_db, start_service):
    from backup_svc.pg.localcluster import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    service = start_service(DATABASE_URL=rich_db, **storage_env(endpoint, "bkt-down"))
    started = time.monotonic()
    reply = service.request("GET", "/api/v1/stored", service.auth())
    assert reply.status == 503 and time.monotonic() - started < 7
    assert endpoint in reply.json()["message"] and "Could not connect" in reply.json()["message"]
    link = service.request("GET", "/api/v1/stored/rich_backup_20261101_030000.sql.gz", service.auth())
    assert link.status == 503 and "Location" not in link.headers


def test_without_storage_the_endpoints_say_how_to_configure_it(rich_service):
    reply = rich_service.request("GET", "/api/v1/stored", rich_service.auth())
    assert reply.status == 404 and "BACKUP_STORAGE_URL" in reply.json()["message"]


def test_cancelling_a_stored_backup_aborts_its_upload(s3, fault_proxy, big_db, start_service):
    """DELETE /api/v1/backups/<id> on a stored backup (parts slowed by the proxy, so it is still running)."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.slow_parts(2.0)
    service = start_service(DATABASE_URL=big_db, **storage_env(proxy.endpoint, bucket))
    started = service.request("POST", "/api/v1/stored", service.auth()).json()
    assert wait_until(lambda: incomplete_uploads(client, bucket), 30)
    cancelled = service.request("DELETE", started["progress_url"], service.auth())
    assert cancelled.status == 200, cancelled.body
    assert wait_until(
        lambda: service.request("GET", started["progress_url"], service.auth()).json()["state"] != "running", 30
    )
    report = service.request("GET", started["progress_url"], service.auth()).json()
    assert report["state"] == "cancelled" and report["error"].startswith("cancelled by token")
    assert "Nothing was stored" in report["error"]
    assert wait_until(lambda: incomplete_uploads(client, bucket) == [], 30)
    assert object_keys(client, bucket) == []
    body = service.request("GET", "/api/v1/stored", service.auth()).json()
    assert body["last_run"]["outcome"] == "cancelled" and body["last_failure"] is None
