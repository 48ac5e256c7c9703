"""The dashboard's words in the states a new user meets, in headless Chromium against a real gunicorn,
PostgreSQL and moto's S3 server on loopback: the bucket still being read, the first scheduled backup
failed, the database refusing connections, and stored backups with their real names in the restore
command. Each state is photographed at 390 and 1280 px (artifacts/words-*.png, looked at by hand).

Faults come from the S3 proxy (tests/s3support.py: moto itself never answers slowly or with 500) and
from PostgreSQL itself (a database with ALLOW_CONNECTIONS false refuses every connection, for real).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS
from tests.processes import wait_until
from tests.s3support import cluster_identity, object_keys, owned, s3_env, seed_backup

SLOW_MS = 60_000
WIDTHS = [1280, 390]


def shoot(page, name: str, *sections: str) -> None:
    """The whole page and the sections named (CSS selectors), for looking at (artifacts/, gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"words-{name}.png"), full_page=True)
    for n, selector in enumerate(sections):
        page.locator(selector).screenshot(path=str(ARTIFACTS / f"words-{name}-part{n}.png"))


def no_sideways_scroll(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"


def is_listing(method: str, path: str, query: dict) -> bool:
    return method == "GET" and query.get("list-type") == ["2"]


@pytest.mark.parametrize("width", WIDTHS)
def test_while_the_bucket_is_read_the_box_is_neutral_not_green(
    s3, fault_proxy, rich_db, start_service, open_dashboard, width
):
    """The proxy holds every bucket listing (the status lists backups, history and holds) until the page
    has been looked at: "Reading the bucket…" in a neutral box; once released, the answer."""
    _, bucket = s3
    proxy, _ = fault_proxy
    service = start_service(DATABASE_URL=rich_db, BACKUP_STORAGE_URL=f"s3://{bucket}/rich/", **s3_env(proxy.endpoint))
    proxy.add(is_listing, ["hold"], repeat_last=True)
    page = open_dashboard(service, width=width)
    box = page.locator("#stored-freshness")
    expect(page.locator("#stored-age")).to_have_text("Reading the bucket…")
    expect(box).to_have_class("freshness loading")
    shoot(page, f"loading-{width}", "#stored")
    assert any(action == "hold" for _, _, action in proxy.log)  # the page really was waiting on the bucket
    proxy.release()
    expect(page.locator("#stored-age")).to_have_text("No stored backup yet", timeout=SLOW_MS)
    expect(box).to_have_class("freshness none")
    expect(page.locator("#stored-newest")).to_have_text(
        "Use “Back up to storage now”, or set BACKUP_SCHEDULE to take them on a schedule."
    )
    no_sideways_scroll(page, width)


def test_the_loading_box_is_not_styled_as_success(s3, moto_s3, rich_db, pg_cluster, start_service, open_dashboard):
    """Computed colours: the loading box has the neutral panel's background, a fresh backup's box the
    success colour — so "Reading the bucket…" can never look like good news."""
    client, bucket = s3
    seed_backup(
        client,
        bucket,
        f"rich/rich_backup_{datetime.now(timezone.utc) - timedelta(hours=1):%Y%m%d_%H%M%S}.sql.gz",
        owner=owned(cluster_identity(pg_cluster), "rich"),
    )
    service = start_service(DATABASE_URL=rich_db, BACKUP_STORAGE_URL=f"s3://{bucket}/rich/", **s3_env(moto_s3.endpoint))
    page = open_dashboard(service, width=1280)
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    box = page.locator("#stored-freshness")
    fresh_bg = box.evaluate("el => getComputedStyle(el).backgroundColor")
    loading_bg = box.evaluate(
        "el => { el.className = 'freshness loading'; return getComputedStyle(el).backgroundColor; }"
    )
    none_bg = box.evaluate("el => { el.className = 'freshness none'; return getComputedStyle(el).backgroundColor; }")
    assert loading_bg == none_bg and loading_bg != fresh_bg, (loading_bg, none_bg, fresh_bg)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_first_scheduled_backup_failed_is_said_so(s3, fault_proxy, rich_db, start_service, open_dashboard, width):
    """`* * * * *` and a bucket that answers 500 to every part upload: within 75 s the first scheduled run
    fails. The page says that run failed and when the schedule tries again — not "or set BACKUP_SCHEDULE"."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.add(lambda method, path, query: method == "PUT" and "partNumber" in query, ["500"], repeat_last=True)
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/rich/",
        BACKUP_SCHEDULE="* * * * *",
        **s3_env(proxy.endpoint),
    )

    def scheduled_failed() -> bool:
        body = service.request("GET", "/api/v1/stored", service.auth()).json()
        run = (body.get("schedule") or {}).get("last_run")
        return bool(run and run["outcome"] == "failed")

    assert wait_until(scheduled_failed, 120, interval=0.5), service.log()[-3000:]
    page = open_dashboard(service, width=width)
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    age = page.locator("#stored-age")
    expect(age).to_have_text(
        re.compile(
            r"^No stored backup yet: the scheduled backup at \d{4}-\d\d-\d\d \d\d:\d\d UTC "
            r"failed$"
        )
    )
    detail = page.locator("#stored-newest")
    expect(detail).to_contain_text("The schedule (* * * * *) tries again, next at ")
    expect(detail).not_to_contain_text("set BACKUP_SCHEDULE")
    expect(page.locator("#stored-freshness")).to_have_class("freshness stale")
    expect(page.locator("#stored-warning")).to_be_hidden()  # the headline says it; said once
    failure = page.locator("#stored-failure")
    expect(failure).to_contain_text("The scheduled backup at ")
    expect(failure).to_contain_text("InternalError (HTTP 500)")
    expect(failure).to_contain_text("Nothing was stored by that run.")
    expect(failure).not_to_contain_text("listed here are untouched")  # there are none
    expect(page.locator("#stored-restore")).to_be_hidden()
    assert object_keys(client, bucket) == []
    no_sideways_scroll(page, width)
    shoot(page, f"first-scheduled-failed-{width}", "#stored")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_database_refusing_connections_is_not_called_unreachable(pg_cluster, start_service, open_dashboard, width):
    """ALLOW_CONNECTIONS false: PostgreSQL answers "not currently accepting connections" — the host and
    port are right, and the page must say so rather than send the user to check them."""
    name = f"closed_{width}"
    url = pg_cluster.create_database(name, "CREATE TABLE t (id int);")
    with pg_cluster.connect() as db:
        db.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    try:
        service = start_service(DATABASE_URL=url)
        page = open_dashboard(service, width=width)
        error = page.locator("#facts-error")
        expect(error).to_contain_text("reachable (host and port are right) but refuses connections now")
        expect(error).to_contain_text(f'database "{name}" is not currently accepting connections')
        expect(error).not_to_contain_text("Check the host and port")
        assert service.request("GET", "/readyz").status == 503
        details = service.request("GET", "/api/v1/database", service.auth())
        text = details.body.decode()
        assert "refuses connections now" in text and "Check the host and port" not in text, text
        no_sideways_scroll(page, width)
        shoot(page, f"database-refusing-{width}", "section:has(#database-heading)")
    finally:
        with pg_cluster.connect() as db:
            db.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


@pytest.mark.parametrize("width", WIDTHS)
def test_stored_backups_show_real_names_and_the_restore_command_comes_first(
    s3, moto_s3, rich_db, pg_cluster, start_service, open_dashboard, width
):
    client, bucket = s3
    now = datetime.now(timezone.utc)
    names = [f"rich_backup_{now - timedelta(hours=h):%Y%m%d_%H%M%S}.sql.gz" for h in (3, 27)]
    for name in names:
        # With the ownership record (#21): without it an object is not this service's backup.
        seed_backup(client, bucket, f"rich/{name}", owner=owned(cluster_identity(pg_cluster), "rich"))
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_URL=f"s3://{bucket}/rich/",
        BACKUP_SCHEDULE="0 3 * * *",
        **s3_env(moto_s3.endpoint),
    )
    page = open_dashboard(service, width=width)
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(2)
    for n, name in enumerate(names):
        expect(rows.nth(n).locator("code.stored-name")).to_have_text(name)
    command = page.locator("#stored-restore-command")
    expect(command).to_have_text(
        f"backup-svc restore s3://{bucket}/rich/{names[0]} --target-url "
        "postgresql://USER@HOST:5432/restored_db --create"
    )
    expect(page.locator("#stored")).not_to_contain_text("YYYYMMDD_HHMMSS")
    # The Restore section: the project's own command first, gzip | psql after it.
    commands = page.locator("#restore-commands").inner_text().splitlines()
    assert commands[0].startswith("backup-svc restore rich_backup_YYYYMMDD_HHMMSS.sql.gz --target-url "), commands
    assert [line for line in commands if line.startswith("gunzip -c")], commands
    no_sideways_scroll(page, width)
    shoot(page, f"stored-names-{width}", "#stored", "section:has(#restore-heading)")
