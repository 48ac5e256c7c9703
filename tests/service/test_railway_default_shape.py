"""docs/deploy-railway.md's default, followed with the variables it lists, run here: one `backups` service
(real gunicorn) with a real PostgreSQL, moto's S3 server for the bucket and real receivers on loopback for
mail (aiosmtpd), the webhook and the heartbeat. A failed scheduled backup reaches all three (the heartbeat
as `/fail`); no backup for 1.5 schedule intervals raises the staleness alarm; `check` exits 0 on each
service the guide configures (the default `backups`, and `backups-cron` of the other shape).

Two substitutions, both said where they happen: Railway's references become the local servers, and the
guide's nightly `0 3 * * *` becomes `* * * * *` so that a run and 1.5 intervals fit in a test. The
failure is real: the database is switched to ALLOW_CONNECTIONS false, so PostgreSQL refuses the backup.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests import receivers
from tests import REPO
from tests.processes import run_cli, wait_until
from tests.s3support import s3_env

GUIDE = REPO / "docs" / "deploy-railway.md"
PING = "/ping/0f4d6c8e-5b1a-4c7e-9a1d-3e2f1b0c9d8a"
HOOK = "/services/T0AAAA/B0BBBB/hooksecretXYZ123"
ADMIN_PASSWORD = "guide-password-0123456789"
ADMIN_TOKEN = "guide-token-0123456789abcdef"
STORAGE = (
    "BACKUP_STORAGE_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_S3_URL_STYLE",
)
ALERTS = ("HEARTBEAT_URL", "SMTP_URL", "NOTIFY_EMAIL_TO", "NOTIFY_EMAIL_FROM", "NOTIFY_WEBHOOK_URL")


def guide_variables() -> dict[str, str]:
    """The `backups` service's variable table: name → its value cell."""
    table = GUIDE.read_text().split("### Variables of the `backups` service", 1)[1].split("\n\n", 2)[1]
    rows = [row.split("|")[1:3] for row in table.splitlines()[2:]]
    found = {}
    for names, value in rows:
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", names):
            found[name] = value.strip()
    return found


def literal(cell: str) -> str:
    """The value a table cell gives first: `1`, `0 3 * * *`, `last=7,…`."""
    return re.match(r"`([^`]+)`", cell).group(1)


def local_environment(
    guide: dict[str, str], *, db_url: str, bucket: str, endpoint: str, smtp_port: int, hook_url: str, ping_url: str
) -> dict[str, str]:
    """Every variable of the guide's table, with Railway's references replaced by the local servers."""
    env = {
        "DATABASE_URL": db_url,  # ${{Postgres.DATABASE_URL}}
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ADMIN_USERNAME": "admin",
        "TRUSTED_PROXY_HOPS": literal(guide["TRUSTED_PROXY_HOPS"]),
        "RAILWAY_DEPLOYMENT_DRAINING_SECONDS": literal(guide["RAILWAY_DEPLOYMENT_DRAINING_SECONDS"]),
        "GRACEFUL_TIMEOUT": literal(guide["GRACEFUL_TIMEOUT"]),
        "BACKUP_STORAGE_URL": f"s3://{bucket}/",  # s3://${{backups-bucket.BUCKET}}/, the same empty prefix
        **s3_env(endpoint),  # the bucket's references; moto on loopback needs path-style URLs
        # The guide's nightly schedule, every minute here: a run and 1.5 intervals fit in a test.
        "BACKUP_SCHEDULE": "* * * * *",
        "BACKUP_RETENTION": literal(guide["BACKUP_RETENTION"]),
        "HEARTBEAT_URL": ping_url,
        "SMTP_URL": f"smtp://ops:{receivers.SECRET}@127.0.0.1:{smtp_port}",  # loopback: AUTH without TLS
        "NOTIFY_EMAIL_TO": "ops@example.com",
        "NOTIFY_EMAIL_FROM": "backups@example.com",
        "NOTIFY_WEBHOOK_URL": hook_url,
        "LINK_SECRET": "",  # optional in the guide; left out
        "RESTORE_TOKEN": "",  # optional in the guide (#30): without it only the browser login restores
    }
    assert literal(guide["BACKUP_SCHEDULE"]) == "0 3 * * *"
    assert set(env) == set(guide), set(env) ^ set(guide)  # every row of the table, nothing else
    return env


def cron_environment(env: dict[str, str]) -> dict[str, str]:
    """The other shape's `backups-cron` variables, as the guide's steps list them; no admin secret."""
    section = GUIDE.read_text().split("## The other shape:", 1)[1].split("\n## ", 1)[0]
    for name in ("DATABASE_URL", "BACKUP_STORAGE_URL", "BACKUP_RETENTION", *ALERTS):
        assert f"`{name}`" in section, name
    keep = ("DATABASE_URL", *STORAGE, "BACKUP_RETENTION", *ALERTS)
    return {name: (env[name] if name in keep else "") for name in env}


def posted(hook) -> list[dict]:
    return [json.loads(body) for method, _, _, body in hook.requests if method == "POST"]


@pytest.fixture
def guide_db(pg_cluster):
    """A database of its own: the test turns its connections off."""
    url = pg_cluster.create_database(
        "guide_default", "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 100);"
    )
    yield url
    with pg_cluster.connect() as db:
        db.execute("ALTER DATABASE guide_default ALLOW_CONNECTIONS true")


@pytest.fixture
def guide(s3, moto_s3, guide_db, smtp_server, receiver):
    """The guide's environment on the local servers, and what hears its alerts: (env, mailbox, webhook, heartbeat)."""
    _, bucket = s3
    controller, mailbox = smtp_server
    hook, monitor = receiver(), receiver()
    env = local_environment(
        guide_variables(),
        db_url=guide_db,
        bucket=bucket,
        endpoint=moto_s3.endpoint,
        smtp_port=controller.port,
        hook_url=hook.url + HOOK,
        ping_url=monitor.url + PING,
    )
    return env, mailbox, hook, monitor


def test_the_guides_default_alerts_on_a_failed_scheduled_backup(guide, guide_db, pg_cluster, start_service):
    env, mailbox, hook, monitor = guide

    # `check` on each service the guide configures, with the database still open.
    served = run_cli("check", env=env)
    assert served.returncode == 0, served.stdout + served.stderr
    assert served.stdout.startswith("checking as: serve")
    assert "alerts: warning" not in served.stdout and "draining: warning" not in served.stdout
    cron = run_cli("check", env=cron_environment(env))
    assert cron.returncode == 0, cron.stdout + cron.stderr
    assert cron.stdout.startswith("checking as: upload")
    assert "alerts: warning" not in cron.stdout

    with pg_cluster.connect() as db:
        db.execute("ALTER DATABASE guide_default ALLOW_CONNECTIONS false")
    service = start_service(**env)

    # The first scheduled run (within a minute) fails: mail, webhook and the heartbeat's /fail.
    assert wait_until(lambda: monitor.requests, 100, interval=0.5), service.log()[-3000:]
    assert [(method, path) for method, path, _, _ in monitor.requests] == [("GET", PING + "/fail")]
    assert wait_until(lambda: posted(hook) and mailbox.messages, 40, interval=0.5), service.log()[-3000:]
    failed = posted(hook)[0]
    assert (failed["event"], failed["outcome"]) == ("backup", "failed")
    assert "refuses connections now" in failed["error"], failed["error"]
    assert mailbox.parsed(0)["Subject"].startswith("[backup_svc] guide_default: backup FAILED at ")

    # The failed scheduled run makes the backups stale at once (one rule with the history): one alarm,
    # by mail and webhook, saying why.
    def stale_posts():
        return [p for p in posted(hook) if p["event"] == "stale"]

    assert wait_until(stale_posts, 60, interval=1), service.log()[-3000:]
    [alarm] = stale_posts()
    assert alarm["outcome"] == "failed" and "refuses connections now" in alarm["error"], alarm
    assert wait_until(
        lambda: any("backups are STALE at " in mailbox.parsed(i)["Subject"] for i in range(len(mailbox.messages))),
        40,
        interval=0.5,
    )
    status = service.request("GET", "/api/v1/stored", {"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert status["newest"]["stale"] is True and status["notify"]["staleness"]["stale"] is True
    # No secret of the settings reached the log.
    log = service.log()
    for secret in (receivers.SECRET, ADMIN_PASSWORD, ADMIN_TOKEN, "hooksecretXYZ123", pg_cluster.password):
        assert secret not in log


def test_the_guides_default_alarms_after_1_5_intervals_without_a_backup(guide, guide_db, pg_cluster, start_service):
    """No backup, and no failure either: another session holds the stored-backup lock (as a backup hung
    elsewhere would), so each scheduled run is skipped. 1.5 intervals after the start (90 s), and not
    before, one staleness alarm by mail and webhook."""
    import psycopg

    from backup_svc.config import Settings
    from backup_svc.storage.lock import lock_key
    from backup_svc.storage.take import destination_of

    env, mailbox, hook, monitor = guide
    settings = Settings.from_env(env)
    with psycopg.connect(guide_db, autocommit=True) as holder:
        assert holder.execute(
            "SELECT pg_try_advisory_lock(%s)", (lock_key(destination_of(settings.dump, settings.storage)),)
        ).fetchone()[0]
        started = time.monotonic()
        service = start_service(**env)

        def stale_posts():
            return [p for p in posted(hook) if p["event"] == "stale"]

        assert wait_until(stale_posts, 150, interval=1), service.log()[-3000:]
        waited = time.monotonic() - started
        assert waited >= 90, f"stale after {waited:.0f} s: before 1.5 intervals"
        [alarm] = stale_posts()
        assert alarm["outcome"] == "failed" and "skipped" not in alarm["error"], alarm
        assert wait_until(
            lambda: any("backups are STALE at " in mailbox.parsed(i)["Subject"] for i in range(len(mailbox.messages))),
            40,
            interval=0.5,
        )
        audit = service.request("GET", "/api/v1/audit", {"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert any(entry["outcome"] == "skipped" for entry in audit["entries"]), audit  # runs came, none stored


def test_the_other_shape_alerts_from_the_cron_run_and_from_the_web_service(guide, guide_db, pg_cluster, start_service):
    """The guide's other shape: `backups` with BACKUP_EXPECTED_SCHEDULE instead of BACKUP_SCHEDULE, and a
    `backups-cron` run of `upload` with its own variables (Railway's cron start is `upload` run here by
    hand). The run fails (the database refuses it): the cron run's alerts go out, and the web service,
    reading the run from the bucket's history, raises its one "backups are failing" alarm."""
    env, mailbox, hook, monitor = guide
    section = GUIDE.read_text().split("## The other shape:", 1)[1].split("\n## ", 1)[0]
    assert "replace `BACKUP_SCHEDULE` by `BACKUP_EXPECTED_SCHEDULE` with the same value" in section
    web_env = {
        **env,
        "BACKUP_SCHEDULE": "",
        "BACKUP_RETENTION": "",
        "BACKUP_EXPECTED_SCHEDULE": env["BACKUP_SCHEDULE"],
    }  # `* * * * *` here, as above
    cron_env = cron_environment(env)

    served = run_cli("check", env=web_env)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "the staleness alarm watches BACKUP_EXPECTED_SCHEDULE" in served.stdout

    with pg_cluster.connect() as db:
        db.execute("ALTER DATABASE guide_default ALLOW_CONNECTIONS false")
    service = start_service(**web_env)
    run = run_cli("upload", env=cron_env)
    assert run.returncode == 1 and "refuses connections now" in run.stderr, run.stderr

    # The cron run's own alerts.
    assert [(method, path) for method, path, _, _ in monitor.requests] == [("GET", PING + "/fail")]
    assert wait_until(lambda: mailbox.messages, 20, interval=0.5)
    assert mailbox.parsed(0)["Subject"].startswith("[backup_svc] guide_default: backup FAILED at ")
    assert [(p["event"], p["outcome"]) for p in posted(hook)][:1] == [("backup", "failed")]

    # The web service's alarm, from the history (refreshed every 10 s), once.
    def web_alarms():
        return [p for p in posted(hook) if p["event"] == "stale"]

    assert wait_until(web_alarms, 90, interval=1), service.log()[-3000:]
    [alarm] = web_alarms()
    assert alarm["outcome"] == "failed" and "refuses connections now" in alarm["error"], alarm
    status = service.request("GET", "/api/v1/stored", {"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert status["newest"]["stale"] is True
    assert status["last_failure"]["trigger"] == "upload command", status["last_failure"]
