"""The dashboard's "Stored backups" section with BACKUP_STORAGE_URL=rclone:…, in headless Chromium against a
real gunicorn, PostgreSQL and `rclone serve webdav` on loopback: the remote's backup listed with its size and
hash, the note on Railway's 15-minute limit, the download streamed through the service. Screenshots at 390 and
1280 px land in artifacts/ (looked at by hand)."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from playwright.sync_api import expect

from backup_svc.storage.rclone_on_demand import MEASURED_MB_S
from tests.conftest import ARTIFACTS
from tests.processes import run_cli

pytestmark = pytest.mark.skipif(
    shutil.which("rclone") is None, reason="rclone is not installed (./dev.sh test installs it)"
)
SLOW_MS = 60_000


@pytest.mark.parametrize("width", [1280, 390])
def test_the_remotes_backup_is_listed_with_the_15_minute_note_and_downloads_through_the_service(
    served, rich_db, start_service, open_dashboard, tmp_path, width
):
    folder, start = served
    env = start() | {"DATABASE_URL": rich_db, "BACKUP_STORAGE_URL": "rclone:dav:backups"}
    uploaded = run_cli("upload", env=env | {"BACKUP_RETENTION": "", "BACKUP_AGE_RECIPIENTS": ""})
    assert uploaded.returncode == 0, uploaded.stderr
    [name] = [n for n in os.listdir(folder / "backups") if n.endswith(".sql.gz")]
    stored = (folder / "backups" / name).read_bytes()
    digest = hashlib.sha256(stored).hexdigest()
    service = start_service(BACKUP_SCHEDULE="0 3 * * *", **env)

    page = open_dashboard(service, width=width, height=1400)
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
    rows = page.locator("#stored-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-name", name)
    expect(rows.first.locator("code.hash")).to_have_attribute("title", digest)
    expect(page.locator("#stored-age")).not_to_contain_text("Reading")
    expect(page.locator("#stored-freshness")).not_to_have_class("stale")
    note = page.locator("#stored-download-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Railway ends any HTTP request after 15 minutes")
    expect(note).to_contain_text(f"At {MEASURED_MB_S:.0f} MB/s")  # the measured rate, labelled as loopback
    expect(note).to_contain_text("loopback")
    expect(note).to_contain_text(f"up to about {MEASURED_MB_S * 900 / 1000:.0f} GB")
    expect(note).to_contain_text("at 5 MB/s it is about 4.5 GB")
    expect(page.locator("#stored-url")).to_have_text("rclone:dav:backups")
    expect(page.locator("#stored-restore-source")).to_have_text(f"rclone:dav:backups/{name}")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#stored").screenshot(path=str(ARTIFACTS / f"rclone-stored-{width}.png"))
    page.screenshot(path=str(ARTIFACTS / f"rclone-stored-{width}-page.png"), full_page=True)

    with page.expect_download(timeout=SLOW_MS) as download_info:
        page.get_by_role("link", name=f"Download {name}").click()
    download = download_info.value
    assert download.suggested_filename == name
    download.save_as(tmp_path / name)
    assert (tmp_path / name).read_bytes() == stored
    assert download.url.startswith(service.base_url)  # through the service: a remote has no presigned links
