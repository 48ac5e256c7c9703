"""`serve` with BACKUP_STORAGE_URL=rclone:<remote>:<path>: the schedule stores backups on the remote, the API lists
them and streams their bytes through the service (`rclone cat`), a dashboard restore reads them, SIGTERM
mid-upload stores nothing. Real rclone (`rclone serve webdav` on a loopback port), PostgreSQL and gunicorn."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import signal
import time

import pytest

from tests.databases import restore, snapshot
from tests.freezable_proxy import FreezableProxy
from tests.http_client import basic
from tests.processes import all_pids, cmdline, run_cli, wait_until
from tests.s3support import remote_files

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)


def backups_in(folder) -> list[str]:
    """Complete backups only: a name with its `.sha256` companion (written last)."""
    if not folder.exists():
        return []
    names = os.listdir(folder)
    return sorted(n for n in names if n.endswith(".sql.gz") and f"{n}.sha256" in names)


def scheduled_entries(service) -> list[dict]:
    entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    return [e for e in entries if e["actor"] == "schedule"]


def rclone_children(service) -> list[int]:
    """`rclone` processes whose parent is the service's worker."""
    workers = set(service.worker_pids())
    found = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in workers and cmdline(pid).startswith("rclone"):
            found.append(pid)
    return found


def partial_in(folder) -> list[str]:
    """The temporary objects (`.partial-…`) of uploads under way in the remote's folder."""
    return [n for n in (os.listdir(folder) if folder.exists() else []) if n.startswith(".partial-")]


@contextlib.contextmanager
def slowed_schedule(start, database_url: str, start_service, hook):
    """A service storing `* * * * *` backups of `database_url` to the webdav remote through a 2 MB/s link
    (a 60 MB backup then takes half a minute to send), its outcomes posted to `hook`."""
    env = start()
    port = int(env["RCLONE_CONFIG_DAV_URL"].rsplit(":", 1)[1].strip("/"))
    proxy = FreezableProxy(port, rate=2_000_000)
    try:
        yield start_service(
            DATABASE_URL=database_url,
            BACKUP_STORAGE_URL="rclone:dav:backups",
            BACKUP_SCHEDULE="* * * * *",
            NOTIFY_WEBHOOK_URL=hook.url,
            **(env | {"RCLONE_CONFIG_DAV_URL": f"http://127.0.0.1:{proxy.port}/"}),
        )
    finally:
        proxy.close()


def post_json(service, path: str, body: dict, headers: dict) -> tuple[int, dict]:
    conn = service.connection(timeout=60)
    conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data)


def store_now(service) -> None:
    """POST /api/v1/stored and wait (120 s at most) until that stored backup is done."""
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    progress = started.json()["progress_url"]
    assert wait_until(lambda: service.request("GET", progress, service.auth()).json()["state"] != "running", 120)
    assert service.request("GET", progress, service.auth()).json()["state"] == "done", service.log()[-3000:]


def restore_new(service, name: str) -> dict:
    """POST /api/v1/restores of `name` into a new database (browser login); its final report, once done."""
    status, job = post_json(
        service, "/api/v1/restores", {"backup": name, "mode": "new"}, basic("admin", service.password)
    )
    assert status == 202, job

    def ended():
        report = service.request("GET", job["progress_url"], service.auth()).json()
        return report if report["state"] != "running" else None

    report = wait_until(ended, 180, interval=0.2)
    assert report and report["state"] == "done", report
    return report


def test_a_scheduled_backup_lands_on_the_remote_and_is_listed_streamed_and_restored(
    served, rich_db, pg_cluster, start_service, tmp_path, receiver
):
    """`* * * * *`: within a minute (bounded at 75 s) a backup is stored on the webdav remote, notified and
    drilled from the remote; the list shows it fresh with its size and sha256; the download streams the same
    bytes, which restore to the same data."""
    folder, start = served
    hook = receiver()
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL="rclone:dav:backups",
        BACKUP_SCHEDULE="* * * * *",
        NOTIFY_WEBHOOK_URL=hook.url,
        NOTIFY_ON="always",
        RESTORE_DRILL_URL=pg_cluster.url("postgres"),
        **start(),
    )
    assert wait_until(lambda: backups_in(folder / "backups"), 75, interval=0.2), service.log()[-3000:]
    assert wait_until(lambda: scheduled_entries(service), 30), service.log()[-3000:]
    entry = scheduled_entries(service)[0]
    [name] = backups_in(folder / "backups")
    stored = (folder / "backups" / name).read_bytes()
    assert entry["outcome"] == "ok" and entry["name"] == name and entry["sha256"] == hashlib.sha256(stored).hexdigest()
    assert remote_files(folder / "backups") == [name, f"{name}.owner.json", f"{name}.sha256"]

    listed = service.request("GET", "/api/v1/stored", service.auth())
    assert listed.status == 200, listed.body
    body = listed.json()
    [backup] = body["backups"]
    assert (backup["name"], backup["size"], backup["sha256"]) == (name, len(stored), hashlib.sha256(stored).hexdigest())
    assert backup["rows"] > 0 and backup["server_version"]
    assert body["newest"]["name"] == name and body["newest"]["stale"] is False and body["newest"]["age_s"] < 120
    assert body["storage"]["url"] == "rclone:dav:backups"
    assert body["download"]["via"] == "service" and body["download"]["http_limit_s"] == 900
    assert body["schedule"]["last_run"]["outcome"] == "ok"

    download = service.request("GET", f"/api/v1/stored/{name}", service.auth())
    assert download.status == 200 and download.complete
    assert download.body == stored
    assert download.headers["Content-Length"] == str(len(stored))
    assert download.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert download.headers["Content-Type"] == "application/gzip"
    assert download.headers["Cache-Control"] == "no-store"
    (tmp_path / name).write_bytes(download.body)
    gzip.decompress(download.body)  # a whole gzip file
    restore(pg_cluster, tmp_path / name, "rich_from_remote_download")
    assert snapshot(pg_cluster, "rich_from_remote_download") == snapshot(pg_cluster, "rich")

    assert service.request("GET", f"/api/v1/stored/{name}").status == 401
    missing = service.request("GET", "/api/v1/stored/rich_backup_20200101_000000.sql.gz", service.auth())
    assert missing.status == 404 and "There is no stored backup" in missing.json()["message"]
    assert service.request("GET", "/api/v1/stored/other_backup_20200101_000000.sql.gz", service.auth()).status == 404
    audit = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
    [done] = [e for e in audit if e["event"] == "stored-download" and e["outcome"] == "ok"]
    assert done["bytes"] == len(stored)

    def events(kind: str) -> list[dict]:
        posted = [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]
        return [p for p in posted if p["event"] == kind]

    assert wait_until(lambda: events("drill"), 120), service.log()[-3000:]
    assert [(e["outcome"], e["name"]) for e in events("backup")] == [("ok", name)]
    assert events("drill")[0]["outcome"] == "ok" and events("drill")[0]["name"] == name, events("drill")
    assert events("drill")[0]["details"]["counts_from"] == "dump-time metadata", events("drill")
    assert "Traceback" not in service.log(), service.log()[-3000:]


def test_a_dashboard_restore_reads_the_backup_from_the_remote(served, rich_db, pg_cluster, start_service):
    """POST /api/v1/restores of a backup on the remote (stored by POST /api/v1/stored): streamed through
    `rclone cat`, checked against the companion's sha256 and the recorded row counts, restored identical."""
    folder, start = served
    service = start_service(DATABASE_URL=rich_db, BACKUP_STORAGE_URL="rclone:dav:backups", **start())
    store_now(service)
    [name] = backups_in(folder / "backups")

    report = restore_new(service, name)
    assert report["counts_from"] == "dump-time metadata"  # the ownership record's row counts were read
    assert snapshot(pg_cluster, report["target"]) == snapshot(pg_cluster, "rich")


def test_a_client_leaving_mid_download_leaves_no_rclone_child(served, big_db, pg_cluster, start_service):
    """The download of a 60 MB backup is dropped after its first megabyte: the `rclone cat` the worker ran
    for it is gone within seconds (process table), and the download is audited as aborted."""
    folder, start = served
    env = start() | {"DATABASE_URL": big_db, "BACKUP_STORAGE_URL": "rclone:dav:backups"}
    uploaded = run_cli("upload", env=env | {"BACKUP_RETENTION": "", "BACKUP_AGE_RECIPIENTS": ""})
    assert uploaded.returncode == 0, uploaded.stderr
    [name] = backups_in(folder / "backups")
    size = (folder / "backups" / name).stat().st_size
    assert size > 30_000_000  # larger than every buffer between rclone and this client
    service = start_service(**env)

    conn = service.connection()
    conn.request("GET", f"/api/v1/stored/{name}", headers=service.auth())
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Length"] == str(size)
    assert len(response.read(1_000_000)) == 1_000_000
    assert rclone_children(service), "no rclone child while the download runs"
    response.close()
    conn.sock and conn.sock.close()
    conn.close()
    assert wait_until(lambda: not rclone_children(service), 5), [cmdline(p) for p in rclone_children(service)]

    def aborted():
        entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
        return [e for e in entries if e["event"] == "stored-download" and e["outcome"] == "aborted"]

    assert wait_until(aborted, 10), service.log()[-3000:]
    assert aborted()[0]["bytes"] < size


def test_a_worker_killed_mid_upload_is_reported_and_its_temporary_object_removed(
    served, big_db, start_service, receiver
):
    """SIGKILL (the out-of-memory killer) to the worker while a scheduled upload runs over a slowed link: the
    next worker removes that run's `.partial-` object from the remote and reports the run failed."""
    folder, start = served
    hook = receiver()
    with slowed_schedule(start, big_db, start_service, hook) as service:
        partial = lambda: partial_in(folder / "backups")  # noqa: E731
        assert wait_until(partial, 75, interval=0.2), service.log()[-3000:]
        [worker] = service.worker_pids()
        os.kill(worker, signal.SIGKILL)
        for pid in [p for p in all_pids() if cmdline(p).startswith("rclone rcat")]:
            os.kill(pid, signal.SIGKILL)  # the killed worker's child (an OOM kill of a cgroup takes it too)

        def reported():
            posted = [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]
            return [p for p in posted if p["event"] == "backup" and p["outcome"] == "failed"]

        assert wait_until(reported, 60), service.log()[-3000:]
        assert "was killed before it finished" in reported()[0]["error"], reported()
        assert "its incomplete upload was aborted" in reported()[0]["error"], reported()
        assert wait_until(lambda: not partial(), 10), partial()
        assert [n for n in remote_files(folder / "backups") if "backup_" in n] == []


def test_sigterm_during_a_scheduled_upload_stores_nothing_and_reports_it(served, big_db, start_service, receiver):
    """SIGTERM to the master (a redeploy) while a scheduled upload runs over a slowed link to the remote:
    the temporary object is removed, no backup-named file is left, the failure goes to the webhook and the
    history on the remote, and the service exits 0."""
    folder, start = served
    hook = receiver()
    with slowed_schedule(start, big_db, start_service, hook) as service:
        assert wait_until(lambda: partial_in(folder / "backups"), 75, interval=0.2), service.log()[-3000:]
        time.sleep(1)  # well inside the upload
        service.proc.send_signal(signal.SIGTERM)
        service.proc.wait(timeout=60)
    assert service.proc.returncode == 0, service.log()[-3000:]
    assert (
        "scheduled stored backup failed, the upload was aborted: stopped: the service is shutting down" in service.log()
    ), service.log()[-3000:]
    assert [n for n in remote_files(folder / "backups") if "backup_" in n] == [], remote_files(folder / "backups")
    failures = [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]
    assert any(f["outcome"] == "failed" and "shutting down" in (f["error"] or "") for f in failures), failures
    events = [p.read_text() for p in (folder / "backups" / "_history").rglob("*.json")]
    assert any('"stored-run"' in e and '"outcome":"failed"' in e for e in events), events
    assert not [p for p in all_pids() if cmdline(p).startswith("rclone rcat")]


def test_an_encrypted_backup_on_the_remote_is_listed_and_restored_from_the_dashboard(
    served, rich_db, pg_cluster, start_service, age_keys
):
    """BACKUP_AGE_RECIPIENTS with a remote in `serve`: POST /api/v1/stored stores only `….sql.gz.age` (age's
    header, never the SQL); the list shows it encrypted; the dashboard restore decrypts it with
    BACKUP_AGE_IDENTITY as it streams from the remote and restores identical data."""
    folder, start = served
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL="rclone:dav:backups",
        BACKUP_AGE_RECIPIENTS=age_keys["age_public"],
        BACKUP_AGE_IDENTITY=age_keys["age"].read_text(),
        **start(),
    )
    store_now(service)
    names = remote_files(folder / "backups")
    [name] = [n for n in names if n.endswith(".sql.gz.age")]
    assert names == [name, f"{name}.owner.json", f"{name}.sha256"]
    stored = (folder / "backups" / name).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n") and b"CREATE TABLE" not in stored

    [backup] = service.request("GET", "/api/v1/stored", service.auth()).json()["backups"]
    assert backup["name"] == name and backup["sha256"] == hashlib.sha256(stored).hexdigest()
    assert backup["encrypted"] is True, backup  # the list shows it encrypted, not only by its name

    report = restore_new(service, name)
    assert snapshot(pg_cluster, report["target"]) == snapshot(pg_cluster, "rich")
