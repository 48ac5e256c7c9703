"""The dashboard's "Size and rows" section in headless Chromium: the trend chart drawn from real stored
backups (real gunicorn, PostgreSQL and moto's S3 server on loopback), the shrink warning with its
Acknowledge button, at 390 and 1280 px. Screenshots go to artifacts/ and, for the closing note, to
/work/notes/ when that folder exists.

The series is taken through the service's own upload code (`take_stored_backup`) with an injected
clock: each backup is given the name — and so the time — of an earlier day instead of waiting days.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backup_svc.config import Settings
from backup_svc.dump.backup import backup_filename
from backup_svc.storage.take import take_stored_backup
from tests.conftest import ARTIFACTS
from tests.s3support import cluster_identity, owned, s3_env, seed_backup

SLOW_MS = 60_000
NOTES = Path("/work/notes")
SCHEMA = """
    CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
    CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers, total numeric NOT NULL);
    INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 200) g;
    INSERT INTO orders (customer, total) SELECT 1 + g % 200, g * 1.5 FROM generate_series(1, 600) g;
"""


def shoot(page, name: str) -> None:
    """The section as it is on screen now (a page screenshot clipped to it: an element screenshot would
    scroll, and the scroll would move the content under the mouse and close an open tip)."""
    ARTIFACTS.mkdir(exist_ok=True)
    box = page.locator("#trend").bounding_box()
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    clip = {"x": box["x"] + scroll[0], "y": box["y"] + scroll[1], "width": box["width"], "height": box["height"]}
    for folder in (ARTIFACTS, NOTES) if NOTES.is_dir() else (ARTIFACTS,):
        page.screenshot(path=str(folder / f"trend-{name}.png"), full_page=True, clip=clip)
    page.screenshot(path=str(ARTIFACTS / f"trend-{name}-page.png"), full_page=True)


@pytest.fixture
def shop(fresh_db):
    """(name, URL) of a fresh small database: see SCHEMA."""
    return fresh_db("trend", SCHEMA)


def test_the_chart_shows_every_backup_and_the_shrink_warning_until_acknowledged(
    s3, moto_s3, shop, pg_cluster, start_service, open_dashboard
):
    client, bucket = s3
    dbname, url = shop
    env = {"DATABASE_URL": url, "BACKUP_STORAGE_URL": f"s3://{bucket}/db/", **s3_env(moto_s3.endpoint)}
    settings = Settings.from_env(env, require_auth=False)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=9)
    names = []
    for day in range(9):
        with pg_cluster.connect(dbname) as db:
            if day == 8:
                db.execute("TRUNCATE orders")
            else:
                db.execute("INSERT INTO customers (name) SELECT 'new ' || g FROM generate_series(1, 20) g")
        names.append(backup_filename(settings.backup_name, start + timedelta(days=day)))
        take_stored_backup(settings, settings.storage, name=names[-1])
    service = start_service(**env, BACKUP_RETENTION="last=3")

    for width in (1280, 390):
        page = open_dashboard(service, width=width, height=1400)
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.reload()  # with the listener in place from the first script on
        expect(page.locator("#trend")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
        for panel in ("#trend-size", "#trend-rows"):
            expect(page.locator(f"{panel} circle.point")).to_have_count(9)
        # the retention (last=3) keeps the 3 newest; the held one (the 8th) is one of them; the 9th shrank
        expect(page.locator("#trend-rows circle.point-gone")).to_have_count(6)
        expect(page.locator("#trend-rows circle.point-shrank")).to_have_count(1)
        expect(page.locator("#trend-rows circle.point-held")).to_have_count(1)
        alert = page.locator("#shrink-alerts .shrink-alert")
        expect(alert).to_have_count(1)
        expect(alert).to_contain_text(
            f"{names[-1]} shrank: 360 rows, 60 % below the median of the 7 backups before it (900 rows)"
        )
        expect(alert).to_contain_text("public.orders 600 → 0")
        expect(alert).to_contain_text(f"Retention keeps {names[-2]}")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"

        held = page.locator(f"#trend-rows circle[data-name='{names[-2]}']")
        held.scroll_into_view_if_needed()
        if width > 400:
            held.hover()
        else:
            held.click()  # a tap on a phone
        tip = page.locator("#trend-tip")
        expect(tip).to_be_visible()
        expect(tip).to_contain_text(names[-2])
        expect(tip).to_contain_text("rows 960")
        expect(tip).to_contain_text("Held by a shrink alarm")
        box, chart = tip.bounding_box(), page.locator("#trend-chart").bounding_box()
        assert box["x"] >= chart["x"] - 1 and box["x"] + box["width"] <= chart["x"] + chart["width"] + 1
        shoot(page, f"{width}")
        assert not [m for m in console if "Content Security Policy" in m], console  # nothing the CSP refused

    page = open_dashboard(service, width=1280, height=1400)
    expect(page.locator("#trend")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    page.get_by_role("button", name=f"Acknowledge the shrink warning and release {names[-2]}").click()
    expect(page.locator("#shrink-alerts")).to_be_hidden(timeout=SLOW_MS)
    expect(page.locator("#trend-rows circle.point-held")).to_have_count(0)
    expect(page.locator("#recent tbody tr").first).to_contain_text("shrink alarm acknowledged: ok", timeout=SLOW_MS)


def test_the_chart_shows_the_last_60_backups_of_90_days(
    s3, moto_s3, rich_db, pg_cluster, start_service, open_dashboard
):
    client, bucket = s3
    now = datetime.now(timezone.utc)
    body = gzip.compress(b"-- seeded backup\n-- PostgreSQL database dump complete\n")
    owner = owned(cluster_identity(pg_cluster), "rich")  # this service's backups, as an upload records them
    for day in list(range(1, 66)) + [95, 120]:  # 65 within 90 days, 2 older
        seed_backup(
            client,
            bucket,
            f"rich/rich_backup_{now - timedelta(days=day, hours=1):%Y%m%d_%H%M%S}.sql.gz",
            body,
            owner=owner,
        )
    service = start_service(DATABASE_URL=rich_db, BACKUP_STORAGE_URL=f"s3://{bucket}/rich/", **s3_env(moto_s3.endpoint))

    page = open_dashboard(service, width=390, height=1400)
    expect(page.locator("#trend")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    expect(page.locator("#trend-size circle.point")).to_have_count(60)
    expect(page.locator("#trend-rows circle.point")).to_have_count(0)  # seeded objects record no rows
    expect(page.locator("#trend-summary")).to_contain_text("60 stored backups since")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(page, "60-points-390")
