"""Restores from the API against a real PostgreSQL, gunicorn and moto's S3 server: into a new database,
replacing the live one while an application reads and writes, undo, drop, and every way it can go
wrong leaving the live database untouched and no stray database behind."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time

import pytest

from tests.databases import DATA, owned_by_a_new_role, snapshot
from tests.http_client import bearer
from tests.processes import wait_until
from tests.receivers import Receiver
from tests.restore_requests import databases, follow, login, post_json, storage_env, store_backup, wait_for_end
from tests.s3support import corrupt_in_place, new_bucket, s3_env

RESTORE_TOKEN = "restore-" + "r" * 20


def allow_connections(cluster, name: str) -> bool:
    with cluster.connect() as db:
        return db.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]


@pytest.fixture
def live(pg_cluster):
    """A fresh copy of the rich database, as the application's live database (dropped afterwards)."""
    name = f"live_{secrets.token_hex(3)}"
    url = pg_cluster.create_database(name, (DATA / "rich.sql").read_text())
    before = databases(pg_cluster)
    yield name, url
    with pg_cluster.connect() as db:
        for other in databases(pg_cluster) - (before - {name}):
            if other.startswith(name):
                db.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


@pytest.fixture
def webhook():
    """A real HTTP receiver for NOTIFY_WEBHOOK_URL."""
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def restore_service(live, s3, moto_s3, start_service, webhook):
    """A service on the live database with storage, RESTORE_TOKEN and a webhook, and one stored backup of it."""
    client, bucket = s3
    name, url = live
    service = start_service(
        DATABASE_URL=url,
        RESTORE_TOKEN=RESTORE_TOKEN,
        NOTIFY_WEBHOOK_URL=webhook.url,
        **storage_env(moto_s3.endpoint, bucket),
    )
    backup = store_backup(service)
    return service, backup, name, client, bucket


def restore_notifications(webhook) -> list[dict]:
    found = [json.loads(body) for method, _, _, body in webhook.requests if method == "POST"]
    return [payload for payload in found if payload["event"] == "restore"]


def test_restore_into_a_new_database_is_identical_to_the_source(restore_service, pg_cluster, webhook):
    service, backup, live_name, _, _ = restore_service
    source = snapshot(pg_cluster, live_name)
    report = follow(service, {"backup": backup, "mode": "new"})
    assert report["state"] == "done", report
    target = report["target"]
    assert target.startswith(f"{live_name}_restored_") and report["kept_as"] is None
    assert report["tables_done"] == report["tables_total"] > 0 and report["bytes_applied"] == report["bytes_total"]
    assert report["counts_from"] == "dump-time metadata" and report["rows"] > 0
    assert snapshot(pg_cluster, target) == source
    assert snapshot(pg_cluster, live_name) == source
    assert (
        "on 2 connections" in service.log()
    )  # RESTORE_JOBS' default: the parallel restore (backup_svc/files/parallel)
    listed = service.request("GET", "/api/v1/databases", service.auth()).json()
    # the session's cluster also holds other tests' restored databases (rclone, dedup): only this live one's count
    ours = [k for k in listed["kept"] if k["name"].startswith(f"{live_name}_")]
    assert [k["name"] for k in ours] == [target] and ours[0]["size"] > 0
    assert target in [k["name"] for k in listed["kept"]]
    # a restore is news: the webhook hears of it although NOTIFY_ON is "failure"
    assert wait_until(lambda: restore_notifications(webhook), 15)
    sent = restore_notifications(webhook)[0]
    assert sent["outcome"] == "ok" and sent["name"] == backup and target in sent["text"]
    entry = next(
        e for e in service.request("GET", "/api/v1/audit", service.auth()).json()["entries"] if e["event"] == "restore"
    )
    assert entry["actor"] == "admin" and entry["outcome"] == "ok" and entry["target"] == target


# The "application": its own process, connecting to the live database by name, writing a row and
# reading in a loop every 20 ms; reconnecting after an error, as any pool does. Stops when stdin closes.
APP_SCRIPT = r"""
import json, secrets, sys, threading, time
import psycopg
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
ok = errors = 0
seen = []
db = None
while not stop.is_set():
    try:
        if db is None or db.closed:
            db = psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=2)
        db.execute("INSERT INTO app.people (name, email) VALUES ('loop', %s)", (f"loop{secrets.token_hex(4)}@x",))
        seen.append(db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0])
        ok += 1
        print(json.dumps({"ok": ok}), flush=True)
    except psycopg.Error:
        errors += 1
        db = None
    time.sleep(0.02)
print(json.dumps({"ok": ok, "errors": errors, "first": seen[0] if seen else None,
                  "last": seen[-1] if seen else None}), flush=True)
"""


class App:
    """The application process; `ok()` is how many loops it has completed so far."""

    def __init__(self, cluster, name: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP_SCRIPT, cluster.url(name)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.last: dict = {"ok": 0}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.last = json.loads(line)

    def ok(self) -> int:
        return self.last["ok"]

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(15)
        time.sleep(0.2)  # the reader thread takes the final line


def test_replace_while_an_app_writes_then_undo(restore_service, pg_cluster):
    service, backup, live_name, _, _ = restore_service
    with pg_cluster.connect(live_name) as db:  # written after the backup: must survive in the kept database
        db.execute("INSERT INTO app.people (name, email) VALUES ('after-backup', 'after@x')")
    with App(pg_cluster, live_name) as app:
        assert wait_until(lambda: app.ok() > 10, 30)
        report = follow(service, {"backup": backup, "mode": "replace", "confirm": live_name})
        assert report["state"] == "done", report
        ok_at_swap = app.ok()
        assert wait_until(lambda: app.ok() > ok_at_swap + 10, 20), "the application never got back in"
    final = app.last
    kept = report["kept_as"]
    assert kept.startswith(f"{live_name}_before_restore_")
    assert final["first"] == 1 and final["last"] == 0, "after the swap the app must see the restored data"
    # errors are bounded: its connection was ended once, and a few attempts may meet the closed database
    assert 0 < report["downtime_s"] < 30
    assert 1 <= final["errors"] <= report["downtime_s"] / 0.02 + 5, (final, report["downtime_s"])
    with pg_cluster.connect(kept) as db:
        assert db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0] == 1
    assert allow_connections(pg_cluster, kept) and allow_connections(pg_cluster, live_name)

    # undo: the same guarded swap, this time with RESTORE_TOKEN (a script's way)
    status, undone, _ = post_json(service, "POST", f"/api/v1/databases/{kept}/undo", None, bearer(RESTORE_TOKEN))
    assert status == 200, undone
    with pg_cluster.connect(live_name) as db:
        assert db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0] == 1
    assert undone["kept_as"] in databases(pg_cluster) and kept not in databases(pg_cluster)
    log = service.log()
    assert '"event": "restore"' in log and '"event": "restore-undo"' in log


def test_replace_needs_the_database_name_typed(restore_service, pg_cluster):
    service, backup, live_name, _, _ = restore_service
    before = databases(pg_cluster)
    for confirm in (None, live_name.upper(), "postgres"):
        body = {"backup": backup, "mode": "replace", **({"confirm": confirm} if confirm else {})}
        status, reply, _ = post_json(service, "POST", "/api/v1/restores", body, login(service))
        assert status == 400 and live_name in reply["message"], reply
    assert databases(pg_cluster) == before


def test_a_corrupted_object_creates_nothing(restore_service, pg_cluster):
    service, backup, live_name, client, bucket = restore_service
    key = f"db/{backup}"
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    corrupt_in_place(client, bucket, key, bytes(data))
    before, source = databases(pg_cluster), snapshot(pg_cluster, live_name)
    report = follow(service, {"backup": backup, "mode": "replace", "confirm": live_name})
    assert report["state"] == "failed" and report["phase"] == "checking", report
    assert "nothing was created" in report["error"]
    assert databases(pg_cluster) == before and snapshot(pg_cluster, live_name) == source


def test_an_object_whose_sha256_differs_from_its_record_creates_nothing(restore_service, pg_cluster):
    """Intact gzip, but not the bytes that were stored: only the recorded sha256 can tell."""
    service, backup, live_name, client, bucket = restore_service
    key = f"db/{backup}"
    head = client.head_object(Bucket=bucket, Key=key)
    client.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={**head["Metadata"], "sha256": "0" * 64},
    )
    before = databases(pg_cluster)
    report = follow(service, {"backup": backup, "mode": "new"})
    assert report["state"] == "failed" and "changed after it was stored" in report["error"], report
    assert databases(pg_cluster) == before


@pytest.fixture
def owned_live(pg_cluster):
    """A live database owned by a role that may create databases but is no superuser; its URL."""
    with owned_by_a_new_role(
        pg_cluster,
        "owned",
        "CREATE TABLE items (id serial PRIMARY KEY, label text)",
        "INSERT INTO items (label) SELECT 'item ' || g FROM generate_series(1, 500) g",
    ) as owned:
        yield owned


def test_a_swap_that_cannot_end_a_session_puts_everything_back(owned_live, s3, moto_s3, start_service, pg_cluster):
    """The service's role owns the live database but is no superuser: it cannot end a superuser's
    session, so the swap runs out of RESTORE_SWAP_TIMEOUT and is undone."""
    name, url, _ = owned_live
    client, bucket = s3
    service = start_service(DATABASE_URL=url, RESTORE_SWAP_TIMEOUT="2", **storage_env(moto_s3.endpoint, bucket))
    backup = store_backup(service)
    before = databases(pg_cluster)
    with pg_cluster.connect(name) as superuser_session:
        superuser_session.execute("SELECT 1")
        report = follow(service, {"backup": backup, "mode": "replace", "confirm": name})
        assert superuser_session.execute("SELECT count(*) FROM items").fetchone()[0] == 500
    assert report["state"] == "failed" and report["phase"] == "swapping", report
    assert "could not end" in report["error"] and "undone" in report["error"], report["error"]
    assert databases(pg_cluster) == before, "no stray database"
    assert allow_connections(pg_cluster, name)


def test_a_role_that_does_not_own_the_database_is_told_which_privilege_it_lacks(
    owned_live, s3, moto_s3, start_service, pg_cluster
):
    name, url, role = owned_live
    with pg_cluster.connect() as db:
        db.execute(f'ALTER DATABASE "{name}" OWNER TO postgres')
        db.execute(f'GRANT ALL ON DATABASE "{name}" TO {role}')
    client, bucket = s3
    service = start_service(DATABASE_URL=url, **storage_env(moto_s3.endpoint, bucket))
    backup = store_backup(service)
    before = databases(pg_cluster)
    report = follow(service, {"backup": backup, "mode": "replace", "confirm": name})
    assert report["state"] == "failed" and report["phase"] == "privileges", report
    assert f"ownership of database '{name}'" in report["error"] and "new database still works" in report["error"]
    assert databases(pg_cluster) == before
    listed = service.request("GET", "/api/v1/databases", service.auth()).json()
    assert listed["privileges"]["can_replace"] is False and listed["privileges"]["can_restore_new"] is True
    report = follow(service, {"backup": backup, "mode": "new"})
    assert report["state"] == "done", report


def test_drop_needs_the_name_typed(restore_service, pg_cluster, webhook):
    service, backup, live_name, _, _ = restore_service
    target = follow(service, {"backup": backup, "mode": "new"})["target"]
    for body in (None, {}, {"confirm": live_name}, {"confirm": target + " "}):
        status, reply, _ = post_json(service, "DELETE", f"/api/v1/databases/{target}", body, login(service))
        assert status == 400 and "nothing was dropped" in reply["message"], reply
    assert target in databases(pg_cluster)
    status, reply, _ = post_json(
        service, "DELETE", f"/api/v1/databases/{live_name}", {"confirm": live_name}, login(service)
    )
    assert status == 404 and live_name in databases(pg_cluster), reply
    status, reply, _ = post_json(service, "DELETE", f"/api/v1/databases/{target}", {"confirm": target}, login(service))
    assert status == 200, reply
    assert target not in databases(pg_cluster)
    assert wait_until(lambda: any("dropped" in n["text"] for n in restore_notifications(webhook)), 15)


@pytest.fixture(scope="module")
def big_restore(big_db, moto_s3, tmp_path_factory):
    """A service on the big database with storage, and one stored backup of it (restores take seconds)."""
    from backup_svc.storage.client import make_client
    from tests.service_process import Service

    bucket = new_bucket(make_client(s3_env(moto_s3.endpoint)))
    env = {"DATABASE_URL": big_db, **storage_env(moto_s3.endpoint, bucket)}
    service = Service(env, tmp_path_factory.mktemp("big-restore") / "service.log").start()
    try:
        yield service, store_backup(service), env
    finally:
        service.stop()


def start_and_wait_for(service, backup: str, phase: str) -> dict:
    status, started, _ = post_json(
        service, "POST", "/api/v1/restores", {"backup": backup, "mode": "new"}, login(service)
    )
    assert status == 202, started

    def reached():
        report = service.request("GET", started["progress_url"], service.auth()).json()
        return (
            report if report["phase"] == phase and report["bytes_applied"] > 0 or report["state"] != "running" else None
        )

    report = wait_until(reached, 120, interval=0.1)
    assert report and report["state"] == "running", report
    return report


def test_cancel_mid_restore_drops_the_half_built_database(big_restore, pg_cluster):
    service, backup, _ = big_restore
    before = databases(pg_cluster)
    report = start_and_wait_for(service, backup, "restoring")
    assert report["target"] in databases(pg_cluster)
    # nothing else starts meanwhile: no download, no stored backup, no second restore
    assert service.request("GET", "/api/v1/backup", service.auth()).status == 429
    assert service.request("POST", "/api/v1/stored", service.auth()).status == 429
    status, _, _ = post_json(service, "POST", "/api/v1/restores", {"backup": backup}, login(service))
    assert status == 409
    status, _, _ = post_json(service, "DELETE", f"/api/v1/restores/{report['id']}", None, service.auth())
    assert status == 403, "ADMIN_TOKEN cannot cancel"
    status, reply, _ = post_json(service, "DELETE", f"/api/v1/restores/{report['id']}", None, login(service))
    assert status == 202, reply
    final = wait_for_end(service, f"/api/v1/restores/{report['id']}")
    assert final["state"] == "cancelled" and "dropped" in final["error"], final
    assert databases(pg_cluster) == before
    assert service.request("GET", "/api/v1/database", service.auth()).json()["dumps_in_progress"] == 0
    assert service.request("HEAD", "/api/v1/backup", service.auth()).status == 200


def test_a_backend_terminated_mid_restore_fails_it_and_leaves_nothing(big_restore, pg_cluster):
    service, backup, _ = big_restore
    before = databases(pg_cluster)
    report = start_and_wait_for(service, backup, "restoring")
    with pg_cluster.connect() as db:
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name = 'backup_svc-restore'",
            (report["target"],),
        ).fetchall()
    assert killed
    final = wait_for_end(service, f"/api/v1/restores/{report['id']}")
    assert final["state"] == "failed" and "was dropped" in final["error"], final
    assert databases(pg_cluster) == before


def test_a_service_stopped_mid_restore_cancels_it_and_leaves_nothing(big_restore, pg_cluster, tmp_path):
    """SIGTERM (a redeploy) while a restore runs: the worker cancels it and drops the half-built database."""
    from tests.service_process import Service

    _, backup, env = big_restore
    service = Service(env, tmp_path / "service.log").start()
    before = databases(pg_cluster)
    start_and_wait_for(service, backup, "restoring")
    service.stop()
    assert wait_until(lambda: databases(pg_cluster) == before, 20), databases(pg_cluster) - before
    assert "the worker is exiting; cancelling it" in service.log()
