"""Restores through the HTTP API, as the restore tests drive them: a JSON request, one stored backup taken by
hand and followed to its end, a restore started and followed to its end, the cluster's databases."""

from __future__ import annotations

import json

from tests.http_client import basic
from tests.processes import wait_until
from tests.s3support import s3_env


def storage_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {"BACKUP_STORAGE_URL": f"s3://{bucket}/db/", **s3_env(endpoint)}


def post_json(service, method: str, path: str, body: dict | None, headers: dict):
    """A request with a JSON body (Service.request sends none)."""
    conn = service.connection(timeout=60)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data.startswith(b"{") else data), dict(response.headers)


def store_backup(service) -> str:
    """One stored backup now (POST /api/v1/stored, followed to its end); its name."""
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    url = started.json()["progress_url"]
    assert wait_until(lambda: service.request("GET", url, service.auth()).json()["state"] != "running", 120)
    report = service.request("GET", url, service.auth()).json()
    assert report["state"] == "done", report
    return (
        report["filename"]
        if "filename" in report
        else service.request("GET", "/api/v1/stored", service.auth()).json()["backups"][0]["name"]
    )


def login(service) -> dict:
    """The dashboard's login (HTTP basic): one of the two credentials that may change databases."""
    return basic("admin", service.password)


def follow(service, body: dict, timeout_s: float = 180, headers: dict | None = None) -> dict:
    status, started, _ = post_json(service, "POST", "/api/v1/restores", body, headers or login(service))
    assert status == 202, started
    return wait_for_end(service, started["progress_url"], timeout_s)


def wait_for_end(service, url: str, timeout_s: float = 180) -> dict:
    def ended():
        report = service.request("GET", url, service.auth()).json()
        return report if report["state"] != "running" else None

    report = wait_until(ended, timeout_s, interval=0.2)
    assert report, f"the restore did not end within {timeout_s} s"
    return report


def databases(cluster) -> set[str]:
    with cluster.connect() as db:
        return {name for (name,) in db.execute("SELECT datname FROM pg_database")}
