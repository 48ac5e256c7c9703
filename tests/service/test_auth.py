"""Every protected path accepts either credential and refuses everything else with 401 + Basic."""

from __future__ import annotations

import pytest

from tests.http_client import basic, bearer

PROTECTED = [("GET", "/"), ("GET", "/api/v1/backup"), ("HEAD", "/api/v1/backup"), ("GET", "/api/v1/database")]


def _bad_credentials(service):
    return {
        "none": {},
        "wrong token": bearer("not-the-token-at-all"),
        "empty bearer": {"Authorization": "Bearer "},
        "wrong password": basic("admin", "not-the-password"),
        "wrong user": basic("root", service.password),
        "token as basic password": basic("admin", service.token),
        "password as token": bearer(service.password),
        "garbage scheme": {"Authorization": "Negotiate abc"},
    }


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize(
    "case",
    [
        "none",
        "wrong token",
        "empty bearer",
        "wrong password",
        "wrong user",
        "token as basic password",
        "password as token",
        "garbage scheme",
    ],
)
def test_bad_credentials_are_401(rich_service, method, path, case):
    reply = rich_service.request(method, path, _bad_credentials(rich_service)[case])

    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="backup_svc"'
    if method == "GET":
        body = reply.json()
        assert body["error"] == "Unauthorized"
        assert "ADMIN_TOKEN" in body["message"]


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("credential", ["token", "basic"])
def test_good_credentials_are_200(rich_service, method, path, credential):
    headers = bearer(rich_service.token) if credential == "token" else basic("admin", rich_service.password)
    reply = rich_service.request(method, path, headers)

    assert reply.status == 200
    assert reply.complete


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_need_no_credentials(rich_service, path):
    assert rich_service.request("GET", path).status == 200


def test_token_only_service_refuses_basic(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, ADMIN_PASSWORD="")
    assert service.request("GET", "/api/v1/database", basic("admin", "")).status == 401
    assert service.request("GET", "/api/v1/database", bearer(service.token)).status == 200


def test_password_only_service_refuses_any_token(start_service, rich_db):
    service = start_service(DATABASE_URL=rich_db, ADMIN_TOKEN="")
    assert service.request("GET", "/api/v1/database", bearer("")).status == 401
    assert service.request("GET", "/api/v1/database", bearer("anything-long-enough")).status == 401
    assert service.request("GET", "/api/v1/database", basic("admin", service.password)).status == 200


def test_unknown_api_path_is_json_404(rich_service):
    reply = rich_service.request("GET", "/api/v1/nothing-here", bearer(rich_service.token))
    assert reply.status == 404
    assert reply.json()["error"] == "Not Found"
