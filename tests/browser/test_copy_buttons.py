"""The dashboard's "Copy" buttons (common.js's wireCopy, used by dashboard.js and stored.js) in headless
Chromium, against a real gunicorn, PostgreSQL and moto's S3 server on loopback.

Both paths are real: on http://127.0.0.1 the page is a secure context and the clipboard API writes (the test
reads the clipboard back); on http://<this machine's other address> it is plain http, Chromium gives no
clipboard API, and the text is selected for Ctrl+C instead. Screenshots at 390 and 1280 px land in
artifacts/copy-*.png (looked at by hand).
"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.browser_page import stamp, wait_for_list
from tests.conftest import ARTIFACTS
from tests.s3support import seed_backup


def other_address() -> str | None:
    """An address of this machine that is not loopback (the service listens on all of them), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture
def stored_service(ours, storage, rich_db, start_service):
    """The rich database's service with storage holding one of its backups; (service, that backup's sha256)."""
    client, bucket, env = storage
    sha = seed_backup(client, bucket, f"rich/rich_backup_{stamp(timedelta(hours=2))}.sql.gz", owner=ours)
    return start_service(DATABASE_URL=rich_db, **env), sha


def open_at(browser, service, base: str, width: int, clipboard: bool):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, http_credentials={"username": "admin", "password": service.password}
    )
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.goto(base + "/")
    return page


def selected(page) -> str:
    return page.evaluate("window.getSelection().toString()")


@pytest.mark.parametrize("width", [1280, 390])
def test_copy_buttons_put_the_full_text_on_the_clipboard(stored_service, browser, width):
    service, sha = stored_service
    page = open_at(browser, service, service.base_url, width, clipboard=True)
    try:
        wait_for_list(page)
        row = page.locator("#stored-list tbody tr").first
        row.get_by_role("button", name=f"Copy the full SHA-256 {sha}").click()
        expect(row.locator(".copy-result")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == sha  # the whole hash, not the shown 12 chars
        expect(row.locator("code.hash")).to_have_text(sha[:12] + "…")  # the row keeps its short form

        restore = page.locator("#stored-restore")
        restore.get_by_role("button", name="Copy command").click()
        expect(restore.locator(".copy-result")).to_have_text("Copied.")
        command = page.evaluate("navigator.clipboard.readText()")
        assert command == page.locator("#stored-restore-command").text_content()
        assert command.startswith("backup-svc restore s3://") and "rich_backup_" in command

        page.get_by_role("button", name="Copy commands").click()
        commands = page.evaluate("navigator.clipboard.readText()")
        assert commands == page.locator("#restore-commands").text_content()
        assert "createdb" in commands and "psql -v ON_ERROR_STOP=1" in commands
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#stored").screenshot(path=str(ARTIFACTS / f"copy-clipboard-{width}.png"))
    finally:
        page.context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_without_a_clipboard_the_text_is_shown_whole_and_selected_for_ctrl_c(stored_service, browser, width):
    address = other_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to reach the service over plain http")
    service, sha = stored_service
    page = open_at(browser, service, f"http://{address}:{service.port}", width, clipboard=False)
    try:
        assert page.evaluate("window.isSecureContext") is False
        wait_for_list(page)
        row = page.locator("#stored-list tbody tr").first
        row.get_by_role("button", name=f"Copy the full SHA-256 {sha}").click()
        expect(row.locator(".copy-result")).to_have_text("Selected: press Ctrl+C (⌘C) to copy.")
        expect(row.locator("code.hash")).to_have_text(sha)  # shown whole, not a dialog
        assert selected(page) == sha

        restore = page.locator("#stored-restore")
        restore.get_by_role("button", name="Copy command").click()
        expect(restore.locator(".copy-result")).to_have_text("Selected: press Ctrl+C (⌘C) to copy.")
        assert selected(page) == page.locator("#stored-restore-command").text_content()

        page.get_by_role("button", name="Copy commands").click()
        expect(page.locator("#restore-commands")).to_be_visible()  # its <details> opened, if it was closed
        assert selected(page) == page.locator("#restore-commands").text_content()
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#stored").screenshot(path=str(ARTIFACTS / f"copy-selected-{width}.png"))
        page.screenshot(path=str(ARTIFACTS / f"copy-selected-{width}-page.png"), full_page=True)
    finally:
        page.context.close()
