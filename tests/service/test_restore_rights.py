"""Reading and changing are different rights: restore, cancel, undo and drop take only the login or
RESTORE_TOKEN — never ADMIN_TOKEN alone, never a signed link, never a request another site steered.
Each refusal its own small case, against a real gunicorn."""

from __future__ import annotations

import json
import time

import pytest

from backup_svc.links import link_signature
from tests.http_client import basic, bearer
from tests.service_process import LINK_SECRET

RESTORE_TOKEN = "restore-" + "t" * 20
CHANGES = [
    ("POST", "/api/v1/restores", {"backup": "x_backup_20260101_000000.sql.gz", "mode": "new"}),
    ("DELETE", "/api/v1/restores/abc", None),
    ("POST", "/api/v1/databases/rich_before_restore_20260101_000000/undo", None),
    ("DELETE", "/api/v1/databases/rich_restored_20260101_000000", {"confirm": "rich_restored_20260101_000000"}),
]


@pytest.fixture(scope="module")
def service(rich_db, tmp_path_factory):
    from tests.service_process import Service

    svc = Service(
        {"DATABASE_URL": rich_db, "RESTORE_TOKEN": RESTORE_TOKEN, "LINK_SECRET": LINK_SECRET},
        tmp_path_factory.mktemp("rights") / "service.log",
    ).start()
    yield svc
    svc.stop()


def send(service, method: str, path: str, body, headers: dict):
    conn = service.connection()
    conn.request(
        method,
        path,
        body=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **headers},
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data), dict(response.headers)


def login(service) -> dict:
    return basic("admin", service.password)


@pytest.mark.parametrize("method,path,body", CHANGES)
def test_no_credentials_get_401(service, method, path, body):
    status, reply, headers = send(service, method, path, body, {})
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="backup_svc"'
    assert "RESTORE_TOKEN" in reply["message"]


@pytest.mark.parametrize("method,path,body", CHANGES)
def test_admin_token_alone_gets_403(service, method, path, body):
    status, reply, _ = send(service, method, path, body, bearer(service.token))
    assert status == 403 and "ADMIN_TOKEN may read" in reply["message"], reply


@pytest.mark.parametrize("method,path,body", CHANGES)
def test_a_wrong_password_or_token_gets_401(service, method, path, body):
    assert send(service, method, path, body, basic("admin", "wrong-" + service.password))[0] == 401
    assert send(service, method, path, body, bearer(RESTORE_TOKEN + "x"))[0] == 401


@pytest.mark.parametrize("method,path,body", CHANGES)
def test_a_signed_link_gets_403_even_with_a_valid_signature(service, method, path, body):
    expires = int(time.time()) + 60
    query = f"?expires={expires}&sig={link_signature(LINK_SECRET, method, path, expires)}"
    assert send(service, method, path + query, body, {})[0] == 403
    assert send(service, method, path + query, body, login(service))[0] == 403


@pytest.mark.parametrize("method,path,body", CHANGES)
@pytest.mark.parametrize(
    "steered",
    [
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
        {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"},
        {"Origin": "https://evil.example"},
    ],
)
def test_a_request_another_site_sent_gets_403(service, method, path, body, steered):
    status, reply, _ = send(service, method, path, body, {**login(service), **steered})
    assert status == 403 and "Refused" in reply["message"], reply


@pytest.mark.parametrize("method,path,body", CHANGES)
def test_the_login_and_restore_token_pass_the_door(service, method, path, body):
    """Past the door the request fails on its merits (no storage, no such restore or database), not on rights."""
    same_origin = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    for headers in ({**login(service), **same_origin}, bearer(RESTORE_TOKEN)):
        status, reply, _ = send(service, method, path, body, headers)
        assert status in (400, 404), (status, reply)


def test_reading_takes_any_credential_but_a_link(service):
    for headers in (bearer(service.token), bearer(RESTORE_TOKEN), login(service)):
        assert service.request("GET", "/api/v1/restores", headers).status == 200
        assert service.request("GET", "/api/v1/databases", headers).status == 200
    assert service.request("GET", "/api/v1/databases", {}).status == 401


def test_refusals_are_audited(service):
    send(service, "POST", "/api/v1/restores", CHANGES[0][2], bearer(service.token))
    entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    assert any(e["event"] == "restore" and e["outcome"] == "denied" and e["status"] == 403 for e in entries)


def test_restore_token_cannot_start_backups(service):
    assert service.request("GET", "/api/v1/backup", bearer(RESTORE_TOKEN)).status == 401
