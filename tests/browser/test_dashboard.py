"""The admin dashboard in a real headless Chromium, against a real gunicorn and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.databases import restore, snapshot
from tests.http_client import gzip_is_valid
from tests.processes import pg_dump_pids, wait_until
from tests.browser_page import backup_id, throttle

# Long enough for a dump on a busy 2-core machine; the tests wait for states, never for speed.
SLOW_MS = 60_000


def progress(service, backup: str) -> dict:
    """The service's own progress report for `backup`."""
    reply = service.request("GET", f"/api/v1/backups/{backup}", service.auth())
    assert reply.status == 200, reply.body
    return reply.json()


def tab_to(page, element_id: str, max_presses: int = 20) -> None:
    """Move the keyboard focus with Tab until it is on `element_id`, as a keyboard user would."""
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with Tab")


def refused_attempts(service) -> int:
    """Audit lines of refused attempts (`backup_started` lines, which have no outcome yet, do not count)."""
    entries = [
        json.loads(line.split("backup_svc.audit: ", 1)[1])
        for line in service.log().splitlines()
        if "backup_svc.audit: " in line
    ]
    return sum(1 for entry in entries if entry.get("outcome") == "refused")


def test_download_restores_identically_and_page_reaches_done(rich_service, pg_cluster, open_dashboard, tmp_path):
    page = open_dashboard(rich_service)
    with pg_cluster.connect("rich") as db:
        version = db.execute("SELECT split_part(current_setting('server_version'), ' ', 1)").fetchone()[0]
    expect(page.locator("h1")).to_have_text("Backups of rich")
    expect(page.locator("#fact-database")).to_have_count(0)  # the heading says it: each fact once
    expect(page.locator("#fact-server")).to_have_text(f"PostgreSQL {version}")
    expect(page.locator("#fact-tables")).to_have_text("6")
    expect(page.locator("#fact-pg-dump")).to_have_text(re.compile(r"^\s*\d+\.\d+\s*$"))  # no path

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download backup").click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)

    assert download.failure() is None
    assert re.fullmatch(r"rich_backup_\d{8}_\d{6}\.sql\.gz", download.suggested_filename)
    expect(page.locator("#status")).to_contain_text("Sent all", timeout=SLOW_MS)
    expect(page.locator("#status")).to_contain_text("your browser's download list shows when it is saved")
    expect(page.locator("#percent")).to_have_text("100 %")
    assert page.locator("#bar").evaluate("bar => bar.value") == 100
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#dl")).to_be_enabled()
    # The restore commands name the file that was just produced.
    expect(page.locator("#restore-commands")).to_contain_text(f"gzip -t {download.suggested_filename}")
    report = progress(rich_service, backup_id(page))
    assert (report["state"], report["tables_done"], report["table_count"]) == ("done", 5, 5)
    assert report["bytes_sent"] == path.stat().st_size
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    expect(page.locator("#result-file")).to_have_text(download.suggested_filename)
    expect(page.locator("#sha-short")).to_have_text(report["sha256"][:12] + "…" + report["sha256"][-4:])
    expect(page.locator("#sha-full")).to_be_hidden()  # on demand
    page.get_by_text("Show the full SHA-256").click()
    expect(page.locator("#sha-full")).to_have_text(report["sha256"])
    assert "saved it" not in page.locator("#progress-panel").inner_text()
    # The audit trail's newest attempt, refreshed on the page once the backup finished: this one.
    newest = page.locator("#recent tbody tr").first
    expect(newest).to_contain_text("ok", timeout=SLOW_MS)
    expect(newest).to_contain_text("admin")
    expect(page.locator("#recent-heading")).to_be_visible()

    restore(pg_cluster, path, "restored_from_dashboard")
    assert snapshot(pg_cluster, "restored_from_dashboard") == snapshot(pg_cluster, "rich")


def test_backend_killed_mid_dump_shows_the_error_never_done(
    big_db, start_service, pg_cluster, open_dashboard, tmp_path
):
    service = start_service(DATABASE_URL=big_db)
    page = open_dashboard(service)
    throttle(page, 2_000_000)
    with page.expect_download() as download_info:
        page.click("#dl")
    expect(page.locator("#status")).to_contain_text("Table 1 of 1: public.blobs", timeout=SLOW_MS)
    running = progress(service, backup_id(page))
    assert running["state"] == "running" and 0 < running["percent"] < 99

    with pg_cluster.connect() as db:
        killed = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%'"
        ).fetchall()
    assert killed == [(True,)]

    expect(page.locator("#error")).to_be_visible(timeout=SLOW_MS)
    report = progress(service, backup_id(page))
    assert report["state"] == "failed" and "mid-stream" in report["error"]
    expect(page.locator("#error-message")).to_have_text(report["error"])
    expect(page.locator("#error-title")).to_have_text("Backup failed.")
    expect(page.locator("#status")).to_be_hidden()  # said once, in the error box
    expect(page.locator("#percent")).not_to_have_text("100 %")
    assert "done" not in page.locator("#progress-panel").inner_text().lower()
    expect(page.locator("#dl")).to_be_enabled()

    download = download_info.value
    failure = download.failure()  # waits until the browser has given up on (or finished) the file
    if failure is None:
        path = tmp_path / "broken.sql.gz"
        download.save_as(path)
        assert not gzip_is_valid(path.read_bytes()), "a dump whose backend was killed must not be a valid gzip"


def test_busy_service_disables_the_button_with_who_and_since_when_and_a_download_cannot_start_twice(
    big_db, start_service, pg_cluster, open_dashboard
):
    service = start_service(DATABASE_URL=big_db)
    page = open_dashboard(service)
    expect(page.locator("#dl")).to_be_enabled()
    expect(page.locator("#dl-reason")).to_have_text("")
    # Another admin's download takes the only slot while the page is open: it reads a little, then stalls.
    other = service.connection()
    other.request("GET", "/api/v1/backup", headers=service.auth())
    response = other.getresponse()
    assert response.status == 200 and len(response.read(65536)) == 65536
    started = progress(service, response.getheader("X-Backup-Id"))["started_at"][11:19]

    expect(page.locator("#dl")).to_be_disabled(timeout=5000)  # noticed without a reload
    reason = f"A backup started by token at {started} UTC is running; the button comes back when it ends."
    expect(page.locator("#dl-reason")).to_have_text(reason)
    # A page opened now has it from the start, beside the button.
    fresh = open_dashboard(service)
    expect(fresh.locator("#dl")).to_be_disabled()
    expect(fresh.locator("#dl-reason")).to_have_text(reason)
    reason_box, button_box = fresh.locator("#dl-reason").bounding_box(), fresh.locator("#dl").bounding_box()
    assert abs(reason_box["y"] - button_box["y"]) < 60  # next to it, not below the fold

    # Should the service still refuse (a click in the moment before the page knew), the page says why.
    fresh.evaluate("document.getElementById('dl').disabled = false")
    fresh.click("#dl")
    expect(fresh.locator("#error-message")).to_contain_text("already running", timeout=SLOW_MS)
    expect(fresh.locator("#error-title")).to_have_text("Backup not started.")
    assert refused_attempts(service) == 1

    other.close()
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 10)
    expect(page.locator("#dl")).to_be_enabled(timeout=5000)
    expect(page.locator("#dl-reason")).to_have_text("")
    throttle(page, 1_000_000)
    with page.expect_download():
        page.click("#dl")
    expect(page.locator("#status")).to_contain_text("Table 1 of 1: public.blobs", timeout=SLOW_MS)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#dl")).to_be_disabled()
    expect(page.locator("#dl-reason")).to_have_text("Your backup is running.")
    first = backup_id(page)

    # Neither a click nor a scripted click event starts another download while this one runs.
    page.locator("#dl").click(force=True)
    page.locator("#dl").dispatch_event("click")
    assert not wait_until(lambda: refused_attempts(service) > 1 or len(pg_dump_pids(pg_cluster)) > 1, 1.5)
    assert page.locator("iframe").count() == 1 and backup_id(page) == first
    assert progress(service, first)["state"] == "running"


def test_phone_width_keyboard_labels_and_no_foreign_assets(rich_service, open_dashboard, tmp_path):
    width = 360
    page = open_dashboard(rich_service, width=width, height=740)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    button = page.get_by_role("button", name="Download backup")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["height"] >= 44

    tab_to(page, "dl")
    with page.expect_download() as download_info:
        page.keyboard.press("Enter")
    download_info.value.save_as(tmp_path / "phone.sql.gz")
    bar = page.get_by_role("progressbar", name="Backup progress")
    expect(page.get_by_role("status").filter(has_text="Sent all")).to_be_visible(timeout=SLOW_MS)
    expect(bar).to_have_attribute("aria-valuetext", "100 %, sent")
    assert bar.evaluate("bar => [bar.value, bar.max]") == [100, 100]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert gzip_is_valid((tmp_path / "phone.sql.gz").read_bytes())

    # Everything the page loaded (style, script, progress polls, the download) came from the service.
    loaded = page.evaluate("performance.getEntriesByType('resource').map(entry => entry.name)")
    assert any(url.endswith("/static/dashboard.js") for url in loaded)
    assert all(url.startswith(rich_service.base_url + "/") for url in loaded), loaded


def test_dashboard_needs_login(rich_service, browser):
    context = browser.new_context(http_credentials={"username": "admin", "password": "wrong-password-0123456"})
    try:
        page = context.new_page()
        seen = []
        page.on("response", lambda response: seen.append((response.url, response.status)))
        try:
            response, aborted = page.goto(f"{rich_service.base_url}/"), None
        except PlaywrightError as exc:  # some Chromium builds abort the navigation instead of showing the 401 page
            response, aborted = None, str(exc)
        # Either way the service's 401 reached the browser (not a blank page for another reason).
        assert (f"{rich_service.base_url}/", 401) in seen, (seen, aborted)
        assert response is None or response.status == 401
        assert page.locator("#dl").count() == 0
    finally:
        context.close()
