"""The progress panel tells the truth: a real Chromium on a throttled network, the bytes it really has.

The network is slowed with the DevTools protocol (Network.emulateNetworkConditions), as a slow
connection would be; the bytes still come from the real service and the real PostgreSQL. What the
browser "has" is the size of the file it is writing (Chromium writes a download as it arrives).
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import REPO
from tests.processes import wait_until
from tests.browser_page import backup_id, throttle

SLOW_MS = 90_000
THROUGHPUT = 2_000_000  # bytes per second, as the issue measured it
# How far the shown percent may be from the share of the file the browser has written. The page
# polls every 500 ms (1 s of transfer is ~8 % of this file) and Chromium writes to disk in batches.
MARGIN_PERCENT = 12.0
SCREENS = REPO / "artifacts" / "screens"


@pytest.fixture(scope="module")
def medium_db(pg_cluster) -> str:
    """~25 MB of gzip in three tables: one analyzed, one never analyzed (no row estimate in the catalog)
    and a small one, so the estimate moves between tables and methods as the issue saw it."""
    return pg_cluster.create_database(
        "medium",
        """
        CREATE EXTENSION pgcrypto;
        CREATE TABLE photos (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO photos SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000)
          FROM generate_series(1, 3000) g;
        ANALYZE photos;
        CREATE TABLE scans (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO scans SELECT g, gen_random_bytes(1000) || gen_random_bytes(1000) || gen_random_bytes(1000)
          FROM generate_series(1, 3500) g;
        CREATE TABLE settings (name text PRIMARY KEY, value text);
        INSERT INTO settings SELECT 'key' || g, md5(g::text) FROM generate_series(1, 20) g;
        ANALYZE settings;
    """,
    )


def report(service, backup: str) -> dict | None:
    reply = service.request("GET", f"/api/v1/backups/{backup}", service.auth())
    return reply.json() if reply.status == 200 else None


def new_file(folder: Path, before: set[Path]) -> Path | None:
    found = [p for p in folder.iterdir() if p not in before]
    return found[0] if found else None


def test_percent_follows_the_bytes_the_browser_has_and_complete_comes_after_the_last_byte(
    medium_db, start_service, open_dashboard, downloads_dir
):
    service = start_service(DATABASE_URL=medium_db)
    page = open_dashboard(service, width=1280)
    throttle(page, THROUGHPUT)
    before = set(downloads_dir.iterdir())
    samples = []  # (seconds, percent shown, bytes the browser has written, server report, status text)
    with page.expect_download(timeout=SLOW_MS) as download_info:
        page.click("#dl")
    started = time.monotonic()
    backup = backup_id(page)
    while time.monotonic() - started < SLOW_MS / 1000:
        server = report(service, backup)  # first the server, then the page: the page cannot be ahead
        shown = page.evaluate("[document.getElementById('bar').value, document.getElementById('status').textContent]")
        file = new_file(downloads_dir, before)
        has = file.stat().st_size if file is not None and file.exists() else 0
        samples.append((time.monotonic() - started, shown[0], has, server, shown[1]))
        if "Sent all" in shown[1] or "failed" in shown[1].lower():
            break
        time.sleep(0.1)
    download = download_info.value
    assert download.failure() is None
    final = Path(download.path())
    size = final.stat().st_size
    done = report(service, backup)
    assert (done["state"], done["bytes_sent"], done["percent"]) == ("done", size, 100.0)
    assert done["sha256"] == hashlib.sha256(final.read_bytes()).hexdigest()
    seconds = samples[-1][0]
    assert size > 15_000_000 and seconds > 6, (size, seconds)  # long enough to watch

    running = [s for s in samples if "Sent all" not in s[4]]
    # 1. The percent never goes down: neither on the page nor in the service's reports.
    shown = [s[1] for s in running]
    assert shown == sorted(shown), shown
    reported = [s[3]["percent"] for s in running if s[3] and s[3]["state"] == "running" and s[3]["percent"] is not None]
    assert reported == sorted(reported), reported
    # 2. It stays within MARGIN_PERCENT of the share of the file the browser has.
    gaps = [(round(s[0], 1), round(s[1], 1), round(100 * s[2] / size, 1)) for s in running if s[0] > 1]
    assert gaps and all(abs(p - b) <= MARGIN_PERCENT for _, p, b in gaps), gaps
    # 3. "Sent all" only once the service has sent the last byte, and the browser (nearly) has it.
    first_complete = samples[-1]
    assert "Sent all" in first_complete[4] and first_complete[3]["state"] in ("running", "done")
    assert first_complete[2] >= size * (1 - MARGIN_PERCENT / 100), (first_complete[2], size)
    early = [s for s in samples if s[2] < size * (1 - MARGIN_PERCENT / 100)]
    assert early and all(s[3] is None or s[3]["state"] == "running" for s in early)
    assert all(s[3]["bytes_sent"] == size for s in samples if s[3] and s[3]["state"] == "done")
    assert "saved" not in first_complete[4].replace("when it is saved", "")
    # 4. The rate is the real send's: about the throttle, not the dump's speed.
    assert 0.6 * THROUGHPUT <= done["rate_bytes_per_s"] <= 1.4 * THROUGHPUT, done
    # 5. The time left, half-way, is about the time it really took from there.
    mid = [s for s in running if s[3] and s[3]["eta_s"] is not None and 30 <= s[1] <= 70]
    assert mid, "no time left shown half-way"
    for t, _, _, server, _ in mid[::5]:
        assert abs(server["eta_s"] - (seconds - t)) <= max(3.0, 0.35 * (seconds - t)), (t, server["eta_s"], seconds)
    print(f"{size} bytes in {seconds:.1f} s; largest gap {max(abs(p - b) for _, p, b in gaps):.1f} points")


# -- screenshots of every state at phone and desktop width ------------------------------------------
def shot(page, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fits(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"


@pytest.mark.parametrize("width", [390, 1280])
def test_every_state_laid_out_at_phone_and_desktop_width(
    width, big_db, rich_db, start_service, pg_cluster, open_dashboard
):
    """Before / busy / during / failed / after, each saved to artifacts/screens/ (people look at them)."""
    service = start_service(DATABASE_URL=big_db)
    page = open_dashboard(service, width=width, height=900)
    fits(page, width)
    shot(page, f"before-{width}")

    holder = service.connection()
    holder.request("GET", "/api/v1/backup", headers=service.auth())
    response = holder.getresponse()
    assert response.status == 200 and len(response.read(65536)) == 65536
    expect(page.locator("#dl")).to_be_disabled(timeout=5000)
    expect(page.locator("#dl-reason")).to_contain_text("started by token at")
    fits(page, width)
    shot(page, f"busy-{width}")
    holder.close()
    expect(page.locator("#dl")).to_be_enabled(timeout=10_000)

    throttle(page, THROUGHPUT)
    with page.expect_download(timeout=SLOW_MS):
        page.click("#dl")
    assert wait_until(lambda: page.evaluate("document.getElementById('bar').value") >= 10, 60)
    expect(page.locator("#eta")).to_contain_text("about")
    fits(page, width)
    shot(page, f"during-{width}")
    with pg_cluster.connect() as db:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'backup_svc-dump%'"
        )
    expect(page.locator("#error")).to_be_visible(timeout=SLOW_MS)
    fits(page, width)
    shot(page, f"failed-{width}")

    fast = start_service(DATABASE_URL=rich_db)
    page = open_dashboard(fast, width=width, height=900)
    with page.expect_download(timeout=SLOW_MS):
        page.click("#dl")
    expect(page.locator("#status")).to_contain_text("Sent all", timeout=SLOW_MS)
    expect(page.locator("#recent tbody tr").first).to_contain_text("ok", timeout=10_000)
    fits(page, width)
    # Times to the second, in UTC: no milliseconds in the table.
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", page.locator("#recent tbody tr td").first.inner_text())
    shot(page, f"after-{width}")
    if width == 390:  # each attempt readable without scrolling sideways: every column is on screen
        row = page.locator("#recent tbody tr").first
        for label in ("Started", "Who", "From", "Outcome", "Size", "Duration"):
            cell = row.locator(f'td[data-label="{label}"]')
            box = cell.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, label
