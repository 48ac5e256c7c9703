"""The dashboard's "Stored backups" section in headless Chromium, against a real gunicorn, PostgreSQL and
moto's S3 server on loopback. Screenshots at 390 and 1280 px land in artifacts/ (looked at by hand)."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import expect

from backup_svc.storage.dedup.sqlgz import MEASURED_MB_S as DEDUP_MB_S
from tests.browser_page import SLOW_MS, stamp, wait_for_list
from tests.conftest import ARTIFACTS
from tests.s3support import (
    incomplete_uploads,
    object_keys,
    s3_env,
    seed_backup,
    stored_metadata,
)


def shoot(page, name: str) -> None:
    """Save the whole page and the "Stored backups" section alone (artifacts/, gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"stored-{name}-page.png"), full_page=True)
    page.locator("#stored").screenshot(path=str(ARTIFACTS / f"stored-{name}.png"))


def human_bytes(n: float) -> str:
    """common.js's humanBytes: steps of 1000, one decimal rounded as JavaScript's toFixed does (a tie goes up)."""
    units = ["bytes", "kB", "MB", "GB", "TB"]
    i = 0
    while abs(n) >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    if i == 0:
        return f"{n:.0f} bytes"
    return f"{Decimal(n).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} {units[i]}"


@pytest.mark.parametrize("width", [1280, 390])
def test_the_section_lists_backups_and_back_up_now_adds_a_row_with_its_hash(
    ours, storage, rich_db, start_service, open_dashboard, width
):
    client, bucket, env = storage
    seeded = {f"rich_backup_{stamp(timedelta(hours=h))}.sql.gz": None for h in (2, 26)}
    for name in seeded:
        seeded[name] = seed_backup(client, bucket, f"rich/{name}", owner=ours)
    service = start_service(
        DATABASE_URL=rich_db, BACKUP_SCHEDULE="0 3 * * *", BACKUP_RETENTION="last=7,daily=14", **env
    )
    page = open_dashboard(service, width=width)
    wait_for_list(page)
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(2)
    newest = max(seeded)  # names sort by time
    expect(rows.nth(0)).to_have_attribute("data-name", newest)
    expect(rows.nth(0).locator("code.hash")).to_have_text(seeded[newest][:12] + "…")
    oldest = min(seeded)
    expect(rows.nth(1)).to_have_attribute("data-name", oldest)
    expect(rows.nth(1).locator("code.hash")).to_have_text(seeded[oldest][:12] + "…")
    expect(page.locator("#stored-age")).to_have_text("Newest stored backup: 2 h old")
    expect(page.locator("#stored-freshness")).not_to_have_class("freshness stale")
    expect(page.locator("#stored-next")).to_contain_text("next: ")
    expect(page.locator("#stored-retention")).to_contain_text("the 7 newest")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"

    page.get_by_role("button", name="Back up to storage now").click()
    expect(page.locator("#stored-status")).to_contain_text("Stored: rich_backup_", timeout=SLOW_MS)
    expect(rows).to_have_count(3)
    new_row = rows.nth(0)
    expect(new_row).to_have_class("just-stored")
    name = new_row.get_attribute("data-name")
    assert name not in seeded and f"rich/{name}" in object_keys(client, bucket)
    stored_sha = stored_metadata(client, bucket, f"rich/{name}")["sha256"]
    expect(new_row.locator("code.hash")).to_have_text(stored_sha[:12] + "…")
    expect(new_row.locator("code.hash")).to_have_attribute("title", stored_sha)
    expect(page.locator("#stored-status")).to_contain_text(stored_sha)
    expect(page.locator("#stored-age")).to_have_text(re.compile(r"Newest stored backup: \d+ s old"))
    expect(page.locator("#stored-last-run")).to_contain_text(f"(by hand): stored {name}")
    assert incomplete_uploads(client, bucket) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    shoot(page, f"after-backup-{width}")


@pytest.mark.parametrize("width", [1280, 390])
def test_an_old_newest_backup_shows_as_a_warning(ours, storage, rich_db, start_service, open_dashboard, width):
    """A daily schedule and a newest backup 2 days 5 hours old: overdue (more than 1.5 intervals)."""
    client, bucket, env = storage
    seed_backup(client, bucket, f"rich/rich_backup_{stamp(timedelta(days=2, hours=5))}.sql.gz", owner=ours)
    seed_backup(client, bucket, f"rich/rich_backup_{stamp(timedelta(days=4, hours=1))}.sql.gz", owner=ours)
    service = start_service(DATABASE_URL=rich_db, BACKUP_SCHEDULE="0 3 * * *", **env)
    page = open_dashboard(service, width=width)
    wait_for_list(page)
    expect(page.locator("#stored-freshness")).to_have_class("freshness stale")
    expect(page.locator("#stored-age")).to_have_text("Newest stored backup: 2 days 5 h old")
    expect(page.locator("#stored-warning")).to_have_text(
        "Warning: The newest backup is 2 days 5 h old, but the schedule runs every 1 day."
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    shoot(page, f"stale-{width}")


def test_a_failed_run_is_told_in_words(s3, fault_proxy, rich_db, start_service, open_dashboard):
    """The storage answers 500 to every part upload (the proxy injects it: moto never fails on its own):
    the run fails after its retries, and the page says so, and that nothing was stored."""
    client, bucket = s3
    proxy, _ = fault_proxy
    proxy.add(lambda method, path, query: method == "PUT" and "partNumber" in query, ["500"], repeat_last=True)
    service = start_service(DATABASE_URL=rich_db, BACKUP_STORAGE_URL=f"s3://{bucket}/rich/", **s3_env(proxy.endpoint))
    page = open_dashboard(service, width=390)
    wait_for_list(page)
    expect(page.locator("#stored-age")).to_have_text("No stored backup yet")
    page.get_by_role("button", name="Back up to storage now").click()
    expect(page.locator("#stored-status")).to_contain_text("Failed: ", timeout=SLOW_MS)
    expect(page.locator("#stored-status")).to_contain_text("Nothing was stored")
    failure = page.locator("#stored-failure")
    expect(failure).to_be_visible()
    expect(failure).to_contain_text("The backup started by hand at ")
    expect(failure).to_contain_text("InternalError (HTTP 500)")
    expect(failure).to_contain_text("Nothing was stored by that run")
    assert object_keys(client, bucket) == [] and incomplete_uploads(client, bucket) == []
    shoot(page, "failed-390")


def test_the_download_link_yields_the_object(ours, storage, rich_db, start_service, open_dashboard, tmp_path):
    client, bucket, env = storage
    name = f"rich_backup_{stamp(timedelta(hours=5))}.sql.gz"
    digest = seed_backup(client, bucket, f"rich/{name}", owner=ours)
    service = start_service(DATABASE_URL=rich_db, **env)
    page = open_dashboard(service)
    wait_for_list(page)
    with page.expect_download(timeout=SLOW_MS) as download_info:
        page.get_by_role("link", name=f"Download {name}").click()
    download = download_info.value
    assert download.suggested_filename == name
    saved = tmp_path / name
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest
    assert download.url.startswith(env["AWS_ENDPOINT_URL"])  # straight from the bucket, not through the service


def test_another_sites_form_and_fetch_cannot_start_a_stored_backup(
    storage, rich_db, start_service, browser, other_site
):
    """The browser holds the admin's credentials for the service (as after a login); a page on another
    site posts a form and a no-cors fetch at POST /api/v1/stored. Neither starts anything."""
    client, bucket, env = storage
    service = start_service(DATABASE_URL=rich_db, **env)
    target = f"{service.base_url}/api/v1/stored"
    url = other_site(f"""<!doctype html><title>elsewhere</title>
        <form id="f" method="post" action="{target}"></form>
        <script>
          fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include"}})
            .finally(function () {{ document.getElementById("f").submit(); }});
        </script>""")
    context = browser.new_context(http_credentials={"username": "admin", "password": service.password})
    try:
        page = context.new_page()
        with page.expect_response(
            lambda r: r.url == target and r.request.resource_type == "document", timeout=SLOW_MS
        ) as navigated:
            page.goto(url)
        assert navigated.value.status == 403
        assert "Refused" in navigated.value.text()
    finally:
        context.close()
    time.sleep(1)
    assert object_keys(client, bucket) == [] and incomplete_uploads(client, bucket) == []
    denied = [
        line
        for line in service.log().splitlines()
        if '"event": "stored-backup"' in line and '"outcome": "denied"' in line
    ]
    assert len(denied) == 2, service.log()[-3000:]
    assert all('"status": 403' in line for line in denied)


@pytest.mark.parametrize("width", [1280, 390])
def test_an_older_versions_backup_is_listed_marked_with_its_download(
    ours, storage, rich_db, start_service, open_dashboard, width
):
    """Issue 21: a backup stored before the ownership record (backup name and sha256 in its metadata,
    no owner) is shown, marked "no owner record", in time order, and downloads like the others."""
    client, bucket, env = storage
    seed_backup(client, bucket, f"rich/rich_backup_{stamp(timedelta(hours=3))}.sql.gz", owner=ours)
    old = f"rich_backup_{stamp(timedelta(days=40))}.sql.gz"
    seed_backup(client, bucket, f"rich/{old}", owner={"backup-name": "rich"})
    service = start_service(DATABASE_URL=rich_db, **env)
    page = open_dashboard(service, width=width)
    wait_for_list(page)
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_have_attribute("data-name", old)
    expect(rows.nth(1).locator(".unrecorded-mark")).to_have_text("no owner record")
    expect(rows.nth(0).locator(".unrecorded-mark")).to_have_count(0)
    expect(rows.nth(1).locator("a.download-link")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    shoot(page, f"unrecorded-{width}")


@pytest.mark.parametrize("width", [1280, 390])
def test_a_dedup_backup_downloads_as_sqlgz_through_the_service(
    width, storage, rich_db, start_service, open_dashboard, tmp_path
):
    """BACKUP_STORAGE_FORMAT=dedup: "Back up to storage now" stores a manifest, listed as one backup with its chunks'
    size; its Download link gives the .sql.gz rebuilt from the chunks, streamed through the service (no presigned
    link can serve it), and the page says so and what Railway's 15-minute limit allows at the measured rate."""
    import gzip
    import json

    client, bucket, env = storage
    service = start_service(
        DATABASE_URL=rich_db, BACKUP_STORAGE_FORMAT="dedup", BACKUP_DEDUP_KEY="dedup-key-for-tests-" + "k" * 24, **env
    )
    page = open_dashboard(service, width=width)
    wait_for_list(page)
    expect(page.locator("#stored")).to_contain_text(
        "A backup stored as one .sql.gz object downloads straight from the bucket"
    )
    note = page.locator("#stored-dedup-note")
    expect(note).to_contain_text("its download is the .sql.gz rebuilt from its chunks")
    expect(note).to_contain_text("Railway ends any HTTP request after 15 minutes")
    expect(note).to_contain_text(f"At {DEDUP_MB_S:.0f} MB/s")  # the measured (loopback) rate, storage/dedup/sqlgz.py
    expect(note).to_contain_text(f"backups up to about {DEDUP_MB_S * 900 / 1000:.0f} GB")
    expect(note).to_contain_text("at 5 MB/s it is about 4.5 GB")
    page.get_by_role("button", name="Back up to storage now").click()
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(1, timeout=SLOW_MS)
    expect(rows.nth(0)).to_have_attribute("data-name", re.compile(r"^rich_backup_\d{8}_\d{6}\.sql\.dedup$"))
    name = rows.nth(0).get_attribute("data-name")
    expect(rows.nth(0).locator(".dedup-note")).to_have_text("as .sql.gz, through the service")
    link, section = rows.nth(0).locator("a.download-link").bounding_box(), page.locator("#stored").bounding_box()
    assert link["x"] + link["width"] <= section["x"] + section["width"] + 1, (link, section)  # not cut off
    sha256 = stored_metadata(client, bucket, "rich/" + name)["sha256"]
    expect(rows.nth(0).locator("code.hash")).to_have_attribute("title", sha256)
    expect(page.locator("#stored")).to_contain_text(f"SHA-256 {sha256}")  # the run's report: the same one
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
    shoot(page, f"dedup-{width}")

    with page.expect_download(timeout=SLOW_MS) as download_info:
        page.get_by_role("link", name=f"Download {name} as .sql.gz").click()
    download = download_info.value
    assert download.failure() is None
    assert download.suggested_filename == name.replace(".sql.dedup", ".sql.gz")
    assert download.url.startswith(service.base_url)  # through the service, not a link to the bucket
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    manifest = json.loads(client.get_object(Bucket=bucket, Key="rich/" + name)["Body"].read())
    assert hashlib.sha256(gzip.decompress(saved.read_bytes())).hexdigest() == manifest["sql_sha256"]
    # its size column: the chunks it names, as stored in the bucket (not the manifest object's own size)
    chunk_bytes = sum(
        client.head_object(Bucket=bucket, Key=f"rich/_chunks/rich/{chunk_id}")["ContentLength"]
        for chunk_id, _, _ in manifest["chunks"]
    )
    expect(rows.nth(0).locator("td").nth(1)).to_have_text(human_bytes(chunk_bytes))


@pytest.mark.parametrize("width", [1280, 390])
def test_an_encrypted_dedup_backup_offers_no_download_and_says_how_to_get_it(
    width, storage, rich_db, start_service, open_dashboard, age_keys
):
    """With BACKUP_AGE_RECIPIENTS a dedup backup's chunks are sealed: the service does not hand them out decrypted
    (the API answers 409), so its row has no Download link and says to restore it or `get` it with the key."""
    client, bucket, env = storage
    service = start_service(
        DATABASE_URL=rich_db,
        BACKUP_STORAGE_FORMAT="dedup",
        BACKUP_DEDUP_KEY="dedup-key-for-tests-" + "k" * 24,
        BACKUP_AGE_RECIPIENTS=age_keys["age_public"],
        **env,
    )
    page = open_dashboard(service, width=width)
    wait_for_list(page)
    expect(page.locator("#stored-dedup-note")).to_contain_text(
        "its chunks are age-encrypted: this service does not hand them out decrypted, so it has no Download link"
    )
    page.get_by_role("button", name="Back up to storage now").click()
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(1, timeout=SLOW_MS)
    expect(rows.nth(0)).to_have_attribute("data-name", re.compile(r"^rich_backup_\d{8}_\d{6}\.sql\.dedup$"))
    expect(rows.nth(0).locator(".dedup-note")).to_have_text(
        "encrypted, deduplicated: restore it, or backup-svc get it with the private key"
    )
    note, section = rows.nth(0).locator(".dedup-note").bounding_box(), page.locator("#stored").bounding_box()
    assert note["x"] + note["width"] <= section["x"] + section["width"] + 1, (note, section)  # wrapped, not cut off
    expect(rows.nth(0).locator("a.download-link")).to_have_count(0)
    shoot(page, f"dedup-encrypted-{width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
