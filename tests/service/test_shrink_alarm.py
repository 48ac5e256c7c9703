"""The shrink alarm end to end: a series of stored backups of a real PostgreSQL in moto's S3 server, a
table emptied before the 8th, and the 8th `upload` run as a user runs it, with aiosmtpd and HTTP
receivers on loopback for mail, webhook and heartbeat.

The first seven backups are taken through the service's own upload code (`take_stored_backup`) with
an injected clock: each is given the name — and so the time — of an earlier day, instead of waiting
days between real runs. Everything else (pg_dump, the upload, the metadata, retention) is the real path.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from backup_svc.config import Settings
from backup_svc.dump.backup import backup_filename
from backup_svc.storage.take import take_stored_backup

from tests import receivers
from tests.processes import run_cli, wait_until
from tests.s3support import history_keys, object_keys, s3_env

HOOK = "/hooks/shrink-0123456789abcdef"
PING = "/ping/0f0e0d0c-1111-2222-3333-444455556666"
SCHEMA = """
    CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers, total numeric NOT NULL);
    CREATE TABLE notes (id serial PRIMARY KEY, body text);
    INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 200) g;
    INSERT INTO orders (customer, total) SELECT 1 + g % 200, g * 1.5 FROM generate_series(1, 600) g;
    INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 50) g;
"""


@pytest.fixture
def shop(fresh_db):
    """(name, URL) of a fresh small database: see SCHEMA."""
    return fresh_db("shrink", SCHEMA)


def env_for(moto_s3, bucket: str, url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", **s3_env(moto_s3.endpoint), **extra}


def store_series(env: dict[str, str], pg_cluster, dbname: str, days: int) -> list[str]:
    """`days` stored backups, one a day ending yesterday (names from an injected clock), a few rows
    added before each: a steady, slowly growing database. Taken without retention (the series is
    the history the 8th is compared with)."""
    settings = Settings.from_env({k: v for k, v in env.items() if k != "BACKUP_RETENTION"}, require_auth=False)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days)
    names = []
    for day in range(days):
        with pg_cluster.connect(dbname) as db:
            db.execute("INSERT INTO notes (body) SELECT 'more ' || g FROM generate_series(1, 3) g")
        name = backup_filename(settings.backup_name, start + timedelta(days=day))
        take_stored_backup(settings, settings.storage, name=name)
        names.append(name)
    return names


def posted(receiver) -> list[dict]:
    return [json.loads(body) for method, _, _, body in receiver.requests if method == "POST"]


def backups_in(client, bucket: str) -> list[str]:
    return [k.split("/")[-1] for k in object_keys(client, bucket) if k.startswith("backups/") and k.endswith(".sql.gz")]


def test_a_table_emptied_before_the_8th_backup_warns_everywhere_and_holds_the_last_good_one(
    s3, moto_s3, shop, pg_cluster, start_service
):
    client, bucket = s3
    dbname, url = shop
    with receivers.receivers() as make, receivers.smtp_server() as (smtp, mailbox):
        hook, monitor = make(), make()
        env = env_for(
            moto_s3,
            bucket,
            url,
            BACKUP_RETENTION="last=2",
            NOTIFY_WEBHOOK_URL=hook.url + HOOK,
            HEARTBEAT_URL=monitor.url + PING,
            SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
            NOTIFY_EMAIL_TO="admin@example.com",
            NOTIFY_EMAIL_FROM="backups@example.com",
        )
        series = store_series(env, pg_cluster, dbname, 7)  # rows 853, 856, … 871
        with pg_cluster.connect(dbname) as db:
            db.execute("TRUNCATE orders")  # 600 rows gone: 271 rows left

        done = run_cli("upload", env=env)

        assert done.returncode == 0, done.stderr
        assert "warning: this backup shrank: rows 271 is 68.6 % below the median 862 of the 7 before it" in done.stderr
        eighth = backups_in(client, bucket)[-1]
        assert eighth not in series
        # retention last=2 ran after the 8th: the 7th is both one of the last 2 and the held one
        assert backups_in(client, bucket) == [series[-1], eighth]

        events = posted(hook)
        assert [(e["event"], e["outcome"]) for e in events] == [("shrink", "warning")]  # NOTIFY_ON=failure
        warning = events[0]
        assert warning["name"] == eighth
        details = warning["details"]
        assert (details["measure"], details["value"], details["median"], details["compared"]) == ("rows", 271, 862, 7)
        assert details["drop_percent"] == 68.6 and details["threshold"] == 30
        assert details["held"] == series[-1] and details["held_value"] == 871
        assert details["shrunk_tables"] == [{"table": "public.orders", "before": 600, "after": 0}]
        assert "68.6 % fewer rows" in warning["text"] and "public.orders 600 → 0" in warning["text"]

        [(_, recipients, _)] = mailbox.messages
        mail = mailbox.parsed(0)
        assert recipients == ["admin@example.com"]
        assert (
            str(mail["Subject"])
            .strip()
            .startswith(  # a long subject is folded after "Subject:"
                f"[backup_svc] {dbname}: backup SHRANK (warning) at "
            )
        )
        text = " ".join(mail.get_content().split())
        assert "but holds 271 rows: 68.6 % below the median of the 7 backups before it (862 rows)" in text
        assert "public.orders 600 → 0" in text and f"Held: {series[-1]}" in text
        # the backup itself succeeded: the heartbeat pings success
        assert [p for _, p, _, _ in monitor.requests] == [PING]

        # Two more nightly runs at the new level: no new alarm (the same drop), and retention last=2
        # still keeps the last backup before the drop.
        for _ in range(2):
            time.sleep(1.1)  # names have one-second resolution
            again = run_cli("upload", env=env)
            assert again.returncode == 0, again.stderr
            assert "shrank" not in again.stderr
        kept = backups_in(client, bucket)
        assert len(kept) == 3 and kept[0] == series[-1] and eighth not in kept
        assert [e["event"] for e in posted(hook)] == ["shrink"] and len(mailbox.messages) == 1

        # The dashboard's API shows the alarm; acknowledging it (audited) ends the hold.
        service = start_service(**env)
        listed = service.request("GET", "/api/v1/stored", service.auth()).json()
        [alert] = listed["shrink_alert"]["alerts"]
        # the warning is in the durable history too, for any process to read after a restart
        outcomes = service.request("GET", "/api/v1/audit?kind=outcome&limit=100", service.auth()).json()["entries"]
        [recorded] = [e for e in outcomes if e.get("type") == "shrink"]
        assert recorded["name"] == eighth and recorded["details"]["value"] == 271
        assert alert["held"] == series[-1] and alert["finding"]["name"] == eighth
        assert [b["held"] for b in listed["backups"]] == [False, False, True]
        assert [p["rows"] for p in listed["trend"]["points"]] == [871, 271, 271]

        refused = service.request("POST", alert["acknowledge_url"], {**service.auth(), "Sec-Fetch-Site": "cross-site"})
        assert refused.status == 403
        acked = service.request("POST", alert["acknowledge_url"], service.auth())
        assert acked.status == 200, acked.body
        assert service.request("POST", alert["acknowledge_url"], service.auth()).status == 404
        assert service.request("GET", "/api/v1/stored", service.auth()).json()["shrink_alert"]["alerts"] == []
        audit = service.request("GET", "/api/v1/audit", service.auth()).json()
        assert any(
            e["event"] == "shrink-acknowledged" and e["outcome"] == "ok" and e["name"] == series[-1]
            for e in audit["entries"]
        )

    pruned = run_cli("prune", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert series[-1] not in backups_in(client, bucket) and len(backups_in(client, bucket)) == 2


def test_a_steady_series_raises_nothing(s3, moto_s3, shop, pg_cluster):
    client, bucket = s3
    dbname, url = shop
    with receivers.receivers() as make:
        hook = make()
        env = env_for(moto_s3, bucket, url, NOTIFY_WEBHOOK_URL=hook.url + HOOK, BACKUP_SHRINK_ALERT="5")
        store_series(env, pg_cluster, dbname, 7)

        done = run_cli("upload", env=env)

        assert done.returncode == 0, done.stderr
        assert "shrank" not in done.stderr
        assert posted(hook) == []
        assert not [k for k in object_keys(client, bucket) if "_holds/" in k]
        # nor a `shrink` outcome in the durable history (where the dashboard reads the alarm after a restart)
        events = [
            json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in history_keys(client, bucket)
        ]
        assert events and [e for e in events if e["type"] == "shrink"] == [], events


def test_off_disables_the_alarm(s3, moto_s3, shop, pg_cluster):
    client, bucket = s3
    dbname, url = shop
    env = env_for(moto_s3, bucket, url, BACKUP_SHRINK_ALERT="off")
    store_series(env, pg_cluster, dbname, 3)
    with pg_cluster.connect(dbname) as db:
        db.execute("TRUNCATE orders")

    done = run_cli("upload", env=env)

    assert done.returncode == 0 and "shrank" not in done.stderr
    assert not [k for k in object_keys(client, bucket) if "_holds/" in k]


def test_a_bad_setting_refuses_to_start():
    done = run_cli(
        "upload",
        env={
            "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
            "BACKUP_STORAGE_URL": "s3://bkt-x/p",
            "BACKUP_SHRINK_ALERT": "lots",
        },
    )
    assert done.returncode != 0
    assert "BACKUP_SHRINK_ALERT must be a percent from 1 to 99 or 'off', got 'lots'" in done.stderr


def test_a_downloads_audit_entry_records_its_size_and_rows(rich_service):
    """The shape of a download is kept with its record too: bytes, SQL bytes and total rows."""
    reply = rich_service.request("GET", "/api/v1/backup", rich_service.auth())
    assert reply.status == 200 and reply.complete

    def finished_download():  # the entry is written just after the last byte went out: wait for it
        entries = rich_service.request("GET", "/api/v1/audit", rich_service.auth()).json()["entries"]
        return next((e for e in entries if e["event"] == "backup" and e["outcome"] == "ok"), None)

    assert wait_until(finished_download, 10)
    entry = finished_download()
    assert entry["bytes"] == len(reply.body) and entry["sql_bytes"] > entry["bytes"]
    assert entry["rows"] == 2905  # tests/data/rich.sql's rows, as the drills count them


def test_an_unreadable_hold_stops_retention_from_deleting_anything(s3, moto_s3, shop, pg_cluster):
    """A hold object someone damaged might still be what protects the last good backup: prune refuses."""
    client, bucket = s3
    dbname, url = shop
    env = env_for(moto_s3, bucket, url)
    series = store_series(env, pg_cluster, dbname, 3)
    client.put_object(Bucket=bucket, Key=f"backups/_holds/{series[0]}.json", Body=b"{not json")

    done = run_cli("prune", env={**env, "BACKUP_RETENTION": "last=1"})

    assert done.returncode == 1
    assert f"backups/_holds/{series[0]}.json is not valid JSON" in done.stderr
    assert backups_in(client, bucket) == series


def test_the_shrink_check_and_retention_read_each_earlier_backup_once(s3, moto_s3, fault_proxy, shop, pg_cluster):
    """After an upload the shrink check and retention both survey the earlier backups; they share what one
    survey read, so each earlier backup's metadata is asked for once per run (a HEAD per object), not once
    by each (issue 25). Retention still decides on it: last=2 keeps the new backup and the newest before."""
    client, bucket = s3
    dbname, url = shop
    proxy, _ = fault_proxy
    env = env_for(moto_s3, bucket, url, BACKUP_RETENTION="last=2")
    names = store_series(env, pg_cluster, dbname, 3)

    done = run_cli("upload", env={**env, **s3_env(proxy.endpoint)})

    assert done.returncode == 0, done.stderr
    heads = [target for method, target, _ in proxy.log if method == "HEAD"]
    assert {name: heads.count(f"/{bucket}/backups/{name}") for name in names} == {name: 1 for name in names}, heads
    kept = backups_in(client, bucket)
    assert len(kept) == 2 and kept[0] == names[-1] and kept[1] not in names, kept
