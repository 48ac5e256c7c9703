"""The dashboard's "Encrypt the file with age" option in a real headless Chromium (real gunicorn, PostgreSQL,
Debian's `age` to check the file)."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess

import pytest
from playwright.sync_api import expect

from tests import REPO

ARTIFACTS = REPO / "artifacts"  # gitignored: the screenshots to look at

SLOW_MS = 60_000


@pytest.fixture
def age_key(age_keys):
    """(the private key file, its public key)."""
    return age_keys["age"], age_keys["age_public"]


def test_the_encrypt_option_downloads_an_age_file_and_shows_its_restore_commands(
    start_service, rich_db, open_dashboard, age_key, tmp_path
):
    key, public = age_key
    service = start_service(DATABASE_URL=rich_db, BACKUP_AGE_RECIPIENTS=public)
    for width in (390, 1280):
        page = open_dashboard(service, width=width)
        expect(page.locator("#encrypt-age")).to_be_checked()
        expect(page.locator("#encrypt-hint")).to_contain_text(public[:9])
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#backup").screenshot(path=str(ARTIFACTS / f"encrypt-option-{width}.png"))

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download backup").click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert re.fullmatch(r"rich_backup_\d{8}_\d{6}\.sql\.gz\.age", download.suggested_filename)
    data = path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    plain = subprocess.run(["age", "-d", "-i", str(key), str(path)], capture_output=True)
    assert plain.returncode == 0, plain.stderr
    assert b"PostgreSQL database dump complete" in gzip.decompress(plain.stdout)
    expect(page.locator("#status")).to_contain_text("Sent all", timeout=SLOW_MS)
    expect(page.locator("#sha-short")).to_contain_text(hashlib.sha256(data).hexdigest()[:12])
    # the restore commands now decrypt the file that was just produced
    expect(page.locator("#restore-commands-age")).to_be_visible()
    expect(page.locator("#restore-commands")).to_be_hidden()
    expect(page.locator("#restore-commands-age")).to_contain_text(f"age -d -i key.txt {download.suggested_filename}")
    page.locator("#progress-panel").screenshot(path=str(ARTIFACTS / "encrypt-done-1280.png"))

    page.locator("#encrypt-age").uncheck()
    expect(page.locator("#dl")).to_be_enabled(timeout=SLOW_MS)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download backup").click()
    assert re.fullmatch(r"rich_backup_\d{8}_\d{6}\.sql\.gz", download_info.value.suggested_filename)


def test_without_recipients_there_is_no_encrypt_option(rich_service, open_dashboard):
    page = open_dashboard(rich_service)
    expect(page.locator("#dl")).to_be_visible()
    expect(page.locator("#encrypt-age")).to_have_count(0)
