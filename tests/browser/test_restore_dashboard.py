"""The dashboard's "Restore a stored backup" section in headless Chromium, against a real gunicorn,
PostgreSQL and moto's S3 server: restore into a new database (identical to the source), replace the
live one and undo, drop after typing the name, and failures said on the page. Screenshots at 390 and
1280 px land in artifacts/restore-*.png (looked at by hand)."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS
from tests.databases import DATA, owned_by_a_new_role, snapshot
from tests.processes import wait_until
from tests.s3support import corrupt_in_place, s3_env

SLOW_MS = 120_000


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"restore-{name}-page.png"), full_page=True)
    page.locator("#restores").screenshot(path=str(ARTIFACTS / f"restore-{name}.png"))


def databases(cluster) -> set[str]:
    with cluster.connect() as db:
        return {name for (name,) in db.execute("SELECT datname FROM pg_database")}


@pytest.fixture
def setup(pg_cluster, s3, moto_s3, start_service):
    """A live copy of the rich database, its service with storage, and one stored backup of it."""
    client, bucket = s3
    name = f"web_{secrets.token_hex(3)}"
    url = pg_cluster.create_database(name, (DATA / "rich.sql").read_text())
    service = start_service(DATABASE_URL=url, BACKUP_STORAGE_URL=f"s3://{bucket}/db/", **s3_env(moto_s3.endpoint))
    started = service.request("POST", "/api/v1/stored", service.auth()).json()
    assert wait_until(
        lambda: service.request("GET", started["progress_url"], service.auth()).json()["state"] == "done", 120
    )
    yield service, name, client, bucket
    with pg_cluster.connect() as db:
        for other in databases(pg_cluster):
            if other.startswith(name):
                db.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


def open_restore_form(page):
    button = page.locator("#stored-list .restore-open").first
    expect(button).to_be_visible(timeout=SLOW_MS)
    button.click()
    expect(page.locator("#restore-form")).to_be_visible()


@pytest.mark.parametrize("width", [1280, 390])
def test_restore_into_a_new_database_from_the_page(setup, pg_cluster, open_dashboard, width):
    service, name, _, _ = setup
    source = snapshot(pg_cluster, name)
    page = open_dashboard(service, width=width, height=1200)
    open_restore_form(page)
    shoot(page, f"form-{width}")
    page.locator("#restore-start").click()
    outcome = page.locator("#restore-outcome")
    expect(outcome).to_contain_text("Restored", timeout=SLOW_MS)
    expect(outcome).to_contain_text("Row counts match (dump-time metadata)")
    target = next(d for d in databases(pg_cluster) if d.startswith(f"{name}_restored_"))
    assert snapshot(pg_cluster, target) == source
    expect(page.locator(f"#kept-list tr[data-name='{target}']")).to_be_visible()
    expect(page.locator("#restore-phase")).to_have_text("Done")
    expect(page.locator("#restore-tables")).to_contain_text(" of ")
    # sizes are written by common.js's humanBytes ("12.3 kB of 12.3 kB", "950 bytes")
    expect(page.locator("#restore-bytes")).to_have_text(
        re.compile(r"^\d+(\.\d)? (bytes|kB|MB)( of \d+(\.\d)? (bytes|kB|MB))?$")
    )
    shoot(page, f"done-{width}")


def test_replace_undo_and_drop_from_the_page(setup, pg_cluster, open_dashboard):
    service, name, _, _ = setup
    with pg_cluster.connect(name) as db:
        db.execute("INSERT INTO app.people (name, email) VALUES ('after-backup', 'after@x')")
    page = open_dashboard(service, width=1280, height=1400)
    open_restore_form(page)
    page.locator("#restore-form input[value=replace]").check()
    expect(page.locator("#restore-confirm-row")).to_be_visible()
    page.locator("#restore-confirm").fill(name.upper())
    page.locator("#restore-start").click()
    expect(page.locator("#restore-form-error")).to_contain_text(f"Type {name} exactly")
    before = databases(pg_cluster)
    assert not any(d.startswith(f"{name}_") for d in before), "a wrong name starts nothing"
    page.locator("#restore-confirm").fill(name)
    page.locator("#restore-start").click()
    outcome = page.locator("#restore-outcome")
    expect(outcome).to_contain_text("Connections were refused for", timeout=SLOW_MS)
    kept = next(d for d in databases(pg_cluster) if d.startswith(f"{name}_before_restore_"))
    expect(outcome).to_contain_text(f"kept as {kept}")
    with pg_cluster.connect(name) as db:
        assert db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0] == 0
    shoot(page, "replaced-1280")
    page.set_viewport_size({"width": 390, "height": 1400})
    shoot(page, "replaced-390")
    page.set_viewport_size({"width": 1280, "height": 1400})

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#kept-list tr[data-name='{kept}'] button", has_text="Undo").click()
    expect(page.locator("#kept-message")).to_contain_text("was swapped back in", timeout=SLOW_MS)
    with pg_cluster.connect(name) as db:
        assert db.execute("SELECT count(*) FROM app.people WHERE name = 'after-backup'").fetchone()[0] == 1
    second = next(d for d in databases(pg_cluster) if d.startswith(f"{name}_before_restore_"))

    page.once("dialog", lambda dialog: dialog.accept(second + "x"))
    page.locator(f"#kept-list tr[data-name='{second}'] button", has_text="Drop").click()
    expect(page.locator("#kept-message")).to_contain_text("Not dropped")
    assert second in databases(pg_cluster)
    page.once("dialog", lambda dialog: dialog.accept(second))
    page.locator(f"#kept-list tr[data-name='{second}'] button", has_text="Drop").click()
    expect(page.locator("#kept-message")).to_contain_text("was dropped")
    expect(page.locator(f"#kept-list tr[data-name='{second}']")).to_have_count(0)
    assert second not in databases(pg_cluster)


def test_a_corrupted_object_is_said_on_the_page(setup, pg_cluster, open_dashboard):
    service, name, client, bucket = setup
    key = next(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith(".sql.gz"))
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    corrupt_in_place(client, bucket, key, bytes(data))
    before = databases(pg_cluster)
    page = open_dashboard(service, width=390, height=1400)
    open_restore_form(page)
    page.locator("#restore-start").click()
    outcome = page.locator("#restore-outcome")
    expect(outcome).to_contain_text("Failed: the backup cannot be restored", timeout=SLOW_MS)
    expect(outcome).to_contain_text("nothing was created")
    assert databases(pg_cluster) == before
    shoot(page, "failed-390")


def test_a_swap_that_cannot_end_a_session_is_said_on_the_page(pg_cluster, s3, moto_s3, start_service, open_dashboard):
    """The service's role owns the live database but is no superuser; a superuser's session stays
    connected, so the swap runs out of RESTORE_SWAP_TIMEOUT, is undone, and the page says so."""
    client, bucket = s3
    items = "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 100) g"
    with owned_by_a_new_role(pg_cluster, "own", items) as (name, url, _):
        service = start_service(
            DATABASE_URL=url,
            RESTORE_SWAP_TIMEOUT="2",
            BACKUP_STORAGE_URL=f"s3://{bucket}/db/",
            **s3_env(moto_s3.endpoint),
        )
        started = service.request("POST", "/api/v1/stored", service.auth()).json()
        assert wait_until(
            lambda: service.request("GET", started["progress_url"], service.auth()).json()["state"] == "done", 120
        )
        before = databases(pg_cluster)
        with pg_cluster.connect(name):
            page = open_dashboard(service, width=1280, height=1200)
            open_restore_form(page)
            page.locator("#restore-form input[value=replace]").check()
            page.locator("#restore-confirm").fill(name)
            page.locator("#restore-start").click()
            outcome = page.locator("#restore-outcome")
            expect(outcome).to_contain_text("Failed: the swap failed and was undone", timeout=SLOW_MS)
            expect(outcome).to_contain_text("could not end 1 session")
            expect(outcome).to_contain_text("was dropped")
        assert databases(pg_cluster) == before
        shoot(page, "swap-failed-1280")


def test_cancel_from_the_page(big_db, s3, moto_s3, start_service, open_dashboard, pg_cluster):
    client, bucket = s3
    service = start_service(DATABASE_URL=big_db, BACKUP_STORAGE_URL=f"s3://{bucket}/db/", **s3_env(moto_s3.endpoint))
    started = service.request("POST", "/api/v1/stored", service.auth()).json()
    assert wait_until(
        lambda: service.request("GET", started["progress_url"], service.auth()).json()["state"] == "done", 180
    )
    before = databases(pg_cluster)
    page = open_dashboard(service, width=390, height=1400)
    open_restore_form(page)
    page.locator("#restore-start").click()
    expect(page.locator("#restore-phase")).to_have_text("Restoring", timeout=SLOW_MS)
    shoot(page, "running-390")
    page.locator("#restore-cancel").click()
    outcome = page.locator("#restore-outcome")
    expect(outcome).to_contain_text("Cancelled: cancelled before the swap", timeout=SLOW_MS)
    expect(outcome).to_contain_text("was dropped")
    assert databases(pg_cluster) == before
