"""The durable history, as users meet it: a real gunicorn service and the `upload`/`prune`/`history` commands
against moto's S3 server on loopback, a real PostgreSQL and an HTTP receiver for the alarm."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

from backup_svc.history.bucket import HistoryBucket
from backup_svc.history.event import AUDIT, RunChain, parse_name
from tests.databases import LockedTable
from tests.http_client import basic
from tests.processes import run_cli, wait_until
from tests.s3support import FaultProxy, cluster_identity, history_keys, object_keys, owned, s3_env, seed_backup
from tests.service_process import wait_idle

PREFIX = "db/"
# What makes two audit entries the same entry, whichever process shows it.
SAME = ("type", "time", "outcome", "id", "actor", "client", "status", "name", "count", "process")


def storage_env(endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return {"BACKUP_STORAGE_URL": f"s3://{bucket}/{PREFIX}", **s3_env(endpoint), **extra}


def audit(service, query: str = "") -> dict:
    reply = service.request("GET", f"/api/v1/audit{query}", service.auth())
    assert reply.status == 200, reply.body
    return reply.json()


def entries(service, query: str = "?limit=100") -> list[tuple]:
    return [tuple(e.get(k) for k in SAME) for e in audit(service, query)["entries"]]


def written(service, timeout_s: float = 30) -> None:
    """Wait until this service's history writer has nothing left to write."""
    assert wait_until(lambda: audit(service)["history"]["writer"]["pending"] == 0, timeout_s), audit(service)


def recent_rows(service) -> list[str]:
    """The dashboard's "Recent backup attempts" rows, as text."""
    page = service.request("GET", "/", basic("admin", service.password))
    assert page.status == 200
    body = re.search(r'<table id="recent".*?<tbody>(.*?)</tbody>', page.body.decode(), re.S).group(1)
    rows = re.findall(r"<tr.*?</tr>", body, re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in rows]


def stored_status(service) -> dict:
    reply = service.request("GET", "/api/v1/stored", service.auth())
    assert reply.status == 200, reply.body
    return reply.json()


def run_to_end(service, timeout_s: float = 90) -> dict:
    started = service.request("POST", "/api/v1/stored", service.auth())
    assert started.status == 202, started.body
    url = started.json()["progress_url"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = service.request("GET", url, service.auth()).json()
        if report["state"] != "running":
            return report
        time.sleep(0.2)
    raise AssertionError("the stored backup did not end")


def test_after_a_restart_the_dashboard_and_the_audit_api_show_the_same_history(
    s3, moto_s3, rich_db, pg_cluster, start_service
):
    client, bucket = s3
    service = start_service(DATABASE_URL=rich_db, BACKUP_LOCK_TIMEOUT="1", **storage_env(moto_s3.endpoint, bucket))
    download = service.request("GET", "/api/v1/backup", service.auth())
    assert download.status == 200 and download.complete
    for _ in range(5):  # a refusal burst: one aggregate of 5
        assert service.request("GET", "/api/v1/backup", {"Authorization": "Bearer wrong-token-xxxxxxxx"}).status == 401
    wait_idle(service)
    assert run_to_end(service)["state"] == "done"
    lock = LockedTable(pg_cluster, "rich", "app.cache")  # the next stored backup cannot get its locks
    try:
        assert run_to_end(service)["state"] in ("failed", "refused")  # the progress says refused: before a byte
    finally:
        lock.release()
    written(service)
    before, rows_before, stored_before = entries(service), recent_rows(service), stored_status(service)
    assert [e[2] for e in before if e[0] == "backup" and e[2] != "denied"] == ["ok"]
    assert sum(e[8] for e in before if e[2] == "denied") == 5  # one aggregate (two if the burst straddled a minute)
    assert [e[2] for e in before if e[0] == "stored-backup"] == ["failed", "ok"]
    assert stored_before["last_failure"]["trigger"] == "by hand"

    service.stop()
    service.start()

    assert entries(service) == before
    assert recent_rows(service) == rows_before
    after = stored_status(service)
    for key in ("last_run", "last_failure"):
        assert {k: v for k, v in after[key].items()} == stored_before[key]
    assert after["history"]["durable"] is True and "survives restarts" in after["history_note"]
    # the denied aggregate was written once, at the old worker's exit; nothing twice
    keys = history_keys(client, bucket)
    assert len(keys) == len(
        {(parse_name(k[len(PREFIX + "_history/") :]).run, parse_name(k[len(PREFIX + "_history/") :]).seq) for k in keys}
    )


def test_audit_pages_backwards_without_losing_or_repeating_an_entry(s3, moto_s3, rich_db, start_service):
    client, bucket = s3
    service = start_service(DATABASE_URL=rich_db, **storage_env(moto_s3.endpoint, bucket))
    for _ in range(5):
        wait_idle(service)
        assert service.request("HEAD", "/api/v1/backup", service.auth()).status == 200
        assert service.request("GET", "/api/v1/backup", service.auth()).status == 200
    written(service)
    everything = audit(service, "?limit=100")["entries"]
    assert len(everything) == 5
    first = audit(service, "?limit=2")
    assert first["next_before"] == first["entries"][-1]["time"]
    rest = audit(service, f"?limit=100&before={first['next_before']}")
    assert rest["next_before"] is None
    assert first["entries"] + rest["entries"] == everything
    assert service.request("GET", "/api/v1/audit?before=yesterday", service.auth()).status == 400
    assert service.request("GET", "/api/v1/audit?limit=0", service.auth()).status == 400


def stale_alarms(hook) -> list[dict]:
    posted = [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]
    return [p for p in posted if p["event"] == "stale"]


def test_a_cron_upload_shows_on_the_web_dashboard_and_its_failure_alarms_the_web_notifier_once(
    s3, moto_s3, rich_db, start_service, receiver
):
    client, bucket = s3
    hook = receiver()
    storage = storage_env(moto_s3.endpoint, bucket)
    web = start_service(
        DATABASE_URL=rich_db, BACKUP_EXPECTED_SCHEDULE="0 3 * * *", NOTIFY_WEBHOOK_URL=hook.url + "/hook", **storage
    )
    cron = {"DATABASE_URL": rich_db, **storage}  # the cron service: no notification channel of its own

    done = run_cli("upload", env=cron)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: (stored_status(web)["last_run"] or {}).get("process") == "upload", 30)
    status = stored_status(web)
    assert status["last_run"]["trigger"] == "upload command" and status["last_run"]["outcome"] == "ok"
    assert status["schedule"]["taken_by"] == "another process" and status["newest"]["stale"] is False
    assert any("upload command" in row and "to storage: ok" in row for row in recent_rows(web))
    assert stale_alarms(hook) == []

    failed = run_cli("upload", env={**cron, "DATABASE_URL": rich_db.rsplit("/", 1)[0] + "/no_such_db"})
    assert failed.returncode == 1
    assert wait_until(lambda: stale_alarms(hook), 40), web.log()[-3000:]
    (alarm,) = stale_alarms(hook)
    assert alarm["outcome"] == "failed" and "no_such_db" in alarm["error"]
    assert stored_status(web)["last_failure"]["process"] == "upload"
    time.sleep(25)  # two more history refreshes and checks: the episode's alarm is not sent again
    assert len(stale_alarms(hook)) == 1
    web.stop()
    web.start()  # the alarm is in the history: a restarted service does not send it again
    time.sleep(15)
    assert len(stale_alarms(hook)) == 1, web.log()[-3000:]


def test_a_stalled_then_refusing_bucket_fails_no_backup_keeps_downloads_prompt_and_loses_nothing(
    moto_s3, s3, rich_db, start_service
):
    """History writes that stall (20 s) and then are refused: downloads and a refusal still answer at once
    (under 5 s and 2 s), the stored backup and two `upload` commands succeed (the first within 30 s, saying what
    could not be written; the commands wait for the history by design, docs/history.md), and once the bucket
    recovers every event is there, once. The stored backup's and the second upload's durations are not bounded."""
    client, bucket = s3
    proxy = FaultProxy(moto_s3.port).start()
    try:
        history_put = lambda method, path, query: method == "PUT" and "/_history/" in path  # noqa: E731
        proxy.add(history_put, ["slow:20"], repeat_last=True)  # the bucket takes writes but never answers in time
        service = start_service(DATABASE_URL=rich_db, **storage_env(proxy.endpoint, bucket))
        started = time.monotonic()
        download = service.request("GET", "/api/v1/backup", service.auth())
        assert download.status == 200 and download.complete
        assert time.monotonic() - started < 5
        assert run_to_end(service)["state"] == "done"
        wait_idle(service)
        started = time.monotonic()  # a refusal is audited before its answer is sent
        assert service.request("GET", "/api/v1/backup?progress_id=not%20an%20id", service.auth()).status == 400
        assert time.monotonic() - started < 2
        started = time.monotonic()
        upload = run_cli("upload", env={"DATABASE_URL": rich_db, **storage_env(proxy.endpoint, bucket)})
        assert upload.returncode == 0, upload.stderr
        assert time.monotonic() - started < 30 and "could not be written" in upload.stderr

        proxy.rules.clear()
        proxy.add(history_put, ["500"], repeat_last=True)  # then it refuses them outright
        started = time.monotonic()
        assert service.request("GET", "/api/v1/backup", service.auth()).status == 200
        assert time.monotonic() - started < 5
        upload = run_cli("upload", env={"DATABASE_URL": rich_db, **storage_env(proxy.endpoint, bucket)})
        assert upload.returncode == 0, upload.stderr
        assert "could not be written" in upload.stderr
        assert wait_until(lambda: audit(service)["history"]["problem"], 30)
        shown = audit(service)
        # the merged view: the downloads, the refused one and the stored backup, whether written yet or not
        assert shown["history"]["writer"]["pending"] >= 1 and len(shown["entries"]) == 4
        page = service.request("GET", "/", basic("admin", service.password)).body.decode()
        assert 'id="history-problem"' in page and "History not recorded" in page

        proxy.rules.clear()  # the bucket recovers
        written(service, timeout_s=60)
        assert audit(service)["history"]["problem"] is None
        assert [(e["type"], e["outcome"]) for e in audit(service)["entries"]] == [
            ("backup", "ok"),
            ("backup", "refused"),
            ("stored-backup", "ok"),
            ("backup", "ok"),
        ]
        keys = history_keys(client, bucket)
        runs = [parse_name(k[len(PREFIX + "_history/") :]) for k in keys]
        assert len(keys) == len({(r.run, r.seq) for r in runs})  # nothing duplicated
        serve = [r.seq for r in runs if r.run == runs[0].run]
        assert sorted(serve) == list(range(len(serve)))  # and nothing missing from the service's run
        check = run_cli("history", "--check", env={"DATABASE_URL": rich_db, **storage_env(moto_s3.endpoint, bucket)})
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proxy.stop()


def seed_event(bucket: HistoryBucket, chain: RunChain, when: datetime, type_: str = "backup") -> str:
    event = chain.make(AUDIT, type_, {"event": type_, "outcome": "ok", "time": when.isoformat()}, when)
    bucket.put(event)
    return bucket.root + event.name


def test_history_retention_deletes_only_old_history_and_backup_retention_never_touches_history(
    s3, moto_s3, rich_db, pg_cluster
):
    client, bucket = s3
    history = HistoryBucket(client, bucket, PREFIX)
    now = datetime.now(timezone.utc)
    chain = RunChain("test")
    old = [seed_event(history, chain, now - timedelta(days=days)) for days in (400, 60, 31)]
    assert len(history_keys(client, bucket)) == 3
    young = [seed_event(history, chain, now - timedelta(days=days)) for days in (29, 1)]
    stranger = f"{PREFIX}_history/2020/01/01/notes.txt"  # not an event: never deleted
    client.put_object(Bucket=bucket, Key=stranger, Body=b"mine")
    backups = [f"{PREFIX}rich_backup_{(now - timedelta(days=d)):%Y%m%d_%H%M%S}.sql.gz" for d in (100, 50, 2)]
    for key in backups:  # the rich database's service's own (their ownership record), so retention may act
        seed_backup(client, bucket, key, owner=owned(cluster_identity(pg_cluster), "rich"))
    env = {"DATABASE_URL": rich_db, **storage_env(moto_s3.endpoint, bucket), "BACKUP_HISTORY_DAYS": "30"}

    dry = run_cli("prune", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 3 event(s) older than 30 days" in dry.stderr
    assert len(history_keys(client, bucket)) == 6

    done = run_cli("prune", env=env)

    assert done.returncode == 0, done.stderr
    assert history_keys(client, bucket) == sorted(young + [stranger])
    assert not set(old) & set(history_keys(client, bucket))
    assert object_keys(client, bucket) == sorted(backups)  # history retention never deletes a backup

    kept = history_keys(client, bucket)
    pruned = run_cli("prune", env={**env, "BACKUP_HISTORY_DAYS": "400", "BACKUP_RETENTION": "last=1"})
    assert pruned.returncode == 0, pruned.stderr
    assert object_keys(client, bucket) == [backups[-1]]
    assert history_keys(client, bucket) == kept  # backup retention never deletes history
    assert run_cli("prune", env={**env, "BACKUP_HISTORY_DAYS": "0"}).returncode == 2

    again = seed_event(history, chain, now - timedelta(days=45))  # each stored backup applies it too
    stored = run_cli("upload", env=env)
    assert stored.returncode == 0, stored.stderr
    assert again not in history_keys(client, bucket) and set(kept) <= set(history_keys(client, bucket))


def test_history_check_reports_a_hand_edited_event_and_a_missing_one(s3, moto_s3, rich_db):
    client, bucket = s3
    env = {"DATABASE_URL": rich_db, **storage_env(moto_s3.endpoint, bucket)}
    history = HistoryBucket(client, bucket, PREFIX)
    chain = RunChain("test")
    now = datetime.now(timezone.utc)
    keys = [seed_event(history, chain, now - timedelta(minutes=10 - n)) for n in range(5)]
    clean = run_cli("history", "--check", env=env)
    assert clean.returncode == 0 and "history check: ok — 5 events from 1 process run(s)" in clean.stdout

    listed = run_cli("history", env=env)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 5
    as_json = [json.loads(line) for line in run_cli("history", "--json", env=env).stdout.splitlines()]
    assert [e["seq"] for e in as_json] == [4, 3, 2, 1, 0]
    older = run_cli("history", "--json", "--before", as_json[2]["time"], env=env)
    assert [json.loads(line)["seq"] for line in older.stdout.splitlines()] == [1, 0]
    assert run_cli("history", "--before", "last tuesday", env=env).returncode == 2

    edited = (
        client.get_object(Bucket=bucket, Key=keys[1])["Body"].read().replace(b'"outcome":"ok"', b'"outcome":"failed"')
    )
    client.put_object(Bucket=bucket, Key=keys[1], Body=edited)
    client.delete_object(Bucket=bucket, Key=keys[3])

    found = run_cli("history", "--check", env=env)

    assert found.returncode == 1
    problems = [line for line in found.stdout.splitlines() if line.startswith("PROBLEM")]
    name = keys[1][len(PREFIX + "_history/") :]
    assert any(name in line and "edited" in line for line in problems), found.stdout
    assert any("#3–#3 are missing" in line for line in problems), found.stdout


def test_after_a_cron_failure_the_failing_notice_holds_from_the_moment_the_failure_shows(
    s3, moto_s3, rich_db, start_service
):
    """Once the web service shows a cron run's failure (last_failure), its staleness judgement (the
    dashboard's "Backups are failing" notice, notify.staleness) says stale in every sample after that,
    over three history refreshes: it never lags the failure nor comes and goes between checks."""
    client, bucket = s3
    storage = storage_env(moto_s3.endpoint, bucket)
    web = start_service(DATABASE_URL=rich_db, BACKUP_EXPECTED_SCHEDULE="0 3 * * *", **storage)
    cron = {"DATABASE_URL": rich_db, **storage}
    assert run_cli("upload", env=cron).returncode == 0
    assert wait_until(lambda: (stored_status(web)["last_run"] or {}).get("process") == "upload", 30)
    time.sleep(1.1)  # a night apart, as far as second-resolution times go
    assert run_cli("upload", env={**cron, "DATABASE_URL": rich_db.rsplit("/", 1)[0] + "/no_such_db"}).returncode == 1
    assert wait_until(lambda: "no_such_db" in ((stored_status(web)["last_failure"] or {}).get("error") or ""), 40)
    samples = []
    deadline = time.monotonic() + 32  # three refreshes of the history, each followed by its check
    while time.monotonic() < deadline:
        status = stored_status(web)
        staleness = (status["notify"] or {}).get("staleness") or {}
        samples.append(
            (
                round(time.monotonic() - deadline + 32, 1),
                staleness.get("stale"),
                "no_such_db" in (staleness.get("last_failed") or ""),
            )
        )
        time.sleep(0.5)
    wrong = [s for s in samples if not (s[1] and s[2])]
    assert not wrong, f"{len(wrong)} of {len(samples)} samples not failing: {wrong[:20]}\n" + web.log()[-3000:]
