"""The dashboard before and after a restart, in headless Chromium, against a real gunicorn, PostgreSQL and
moto's S3 server: the history in the bucket makes the page the same. Screenshots at 390 and 1280 px of
both land in artifacts/history-{before,after}-{width}.png (looked at by hand)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import ARTIFACTS
from tests.processes import run_cli, wait_until
from tests.s3support import s3_env
from tests.service_process import wait_idle

WIDTHS = (1280, 390)


def what_the_page_says(page) -> dict:
    """The history's parts of the dashboard, as text, once the stored section has loaded."""
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=60_000)
    return {
        "recent": page.locator("#recent tbody").inner_text(),
        "last_run": page.locator("#stored-last-run").inner_text(),
        "failure": page.locator("#stored-failure-text").inner_text(),
        "note": page.locator("#history-note").inner_text(),
        "stale": page.locator("#stale").inner_text(),
    }


def stale_judged(service) -> bool:
    """The staleness watch has judged the backups stale (what the page's "Backups are failing" shows)."""
    status = service.request("GET", "/api/v1/stored", service.auth()).json()
    return bool(((status.get("notify") or {}).get("staleness") or {}).get("stale"))


def shoot_all(service, open_dashboard, moment: str) -> list[dict]:
    seen = []
    for width in WIDTHS:
        page = open_dashboard(service, width=width)
        seen.append(what_the_page_says(page))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"history-{moment}-{width}.png"), full_page=True)
        page.locator("#stored").screenshot(path=str(ARTIFACTS / f"history-{moment}-{width}-stored.png"))
        page.locator("#recent").screenshot(path=str(ARTIFACTS / f"history-{moment}-{width}-recent.png"))
        page.locator("#notify").screenshot(path=str(ARTIFACTS / f"history-{moment}-{width}-notify.png"))
    return seen


def test_the_dashboard_shows_the_same_history_after_a_restart(s3, moto_s3, rich_db, start_service, open_dashboard):
    client, bucket = s3
    storage = {"BACKUP_STORAGE_URL": f"s3://{bucket}/rich/", **s3_env(moto_s3.endpoint)}
    service = start_service(DATABASE_URL=rich_db, BACKUP_EXPECTED_SCHEDULE="0 3 * * *", **storage)
    assert service.request("GET", "/api/v1/backup", service.auth()).status == 200
    for _ in range(3):
        assert service.request("GET", "/api/v1/backup", {"Authorization": "Bearer not-the-token-xx"}).status == 401
    wait_idle(service)
    assert run_cli("upload", env={"DATABASE_URL": rich_db, **storage}).returncode == 0  # a cron service's run
    failed = run_cli("upload", env={"DATABASE_URL": rich_db.rsplit("/", 1)[0] + "/gone_db", **storage})
    assert failed.returncode == 1
    assert wait_until(
        lambda: (
            "upload"
            in (service.request("GET", "/api/v1/stored", service.auth()).json().get("last_failure") or {}).get(
                "process", ""
            )
        ),
        30,
    )
    assert wait_until(lambda: stale_judged(service), 30)  # the page shows the watch's judgement: wait for it
    before = shoot_all(service, open_dashboard, "before")
    assert "upload command" in before[0]["recent"] and "denied" in before[0]["recent"]
    assert "gone_db" in before[0]["failure"] and "survive" not in before[0]["note"]
    assert "Backups are failing" in before[0]["stale"] and "gone_db" in before[0]["stale"]

    service.stop()
    service.start()
    # The page is rendered on the server: wait until the restarted service has read its history and
    # judged staleness from it (as the first half waits for the cron failure), then compare the pages.
    assert wait_until(lambda: stale_judged(service), 60)
    after = shoot_all(service, open_dashboard, "after")
    assert after == before


def test_without_storage_the_dashboard_says_its_history_will_not_survive_a_restart(
    rich_db, start_service, open_dashboard
):
    service = start_service(DATABASE_URL=rich_db)
    assert service.request("GET", "/api/v1/backup", service.auth()).status == 200
    for width in WIDTHS:
        page = open_dashboard(service, width=width)
        expect(page.locator("#history-note")).to_contain_text("This history will not survive a restart")
        expect(page.locator("#recent tbody tr")).to_have_count(1)
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#history-note").screenshot(path=str(ARTIFACTS / f"history-memory-{width}-note.png"))
    service.stop()
    service.start()
    page = open_dashboard(service)
    expect(page.locator("#recent tbody tr.empty")).to_have_text("No backup attempts since the service started.")
