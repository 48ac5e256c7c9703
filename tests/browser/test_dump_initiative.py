"""Who may start a dump from a browser (CONTRACT.md), tried in a real headless Chromium.

The admin is logged in (the context answers the service's basic-auth challenge, as a browser with
cached credentials does). Pages of "other sites" are served by a tiny http.server on another port:
as http://localhost:<port> they are cross-site to the service on 127.0.0.1, as http://127.0.0.1:<port>
they are same-site (another port of the same host, like a sibling subdomain). Each vector that
reached the service without the rule started a full dump; now each must get 403 before credentials.
"""

from __future__ import annotations

import json
import re

import pytest

from backup_svc.links import signed_backup_url
from tests.browser.conftest import LINK_SECRET, serve_pages
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: F401  (the browser fixture uses them)
from tests.http_client import gzip_is_valid
from tests.processes import wait_until


# Each vector as another page would use it; {url} is the service's download URL.
VECTORS = {
    "location.href": '<script>location.href = "{url}";</script>',
    "GET form": '<form id="f" method="get" action="{url}"><input type="hidden" name="progress_id" value="form-0001">'
    '</form><script>document.getElementById("f").submit();</script>',
    "meta refresh": '<meta http-equiv="refresh" content="0; url={url}">',
    "window.open": '<script>window.open("{url}");</script>',
    "a download": '<a id="a" href="{url}" download>backup</a><script>document.getElementById("a").click();</script>',
    "fetch": '<script>fetch("{url}", {{mode: "no-cors", credentials: "include"}});</script>',
    "img": '<img src="{url}">',
    "script": '<script src="{url}"></script>',
    "iframe": '<iframe src="{url}"></iframe>',
}


@pytest.fixture(scope="module")
def other_pages():
    """Factory: serve one HTML page on another port; returns its path (any Host header gets it)."""
    pages: dict[str, bytes] = {}
    server = serve_pages(pages)

    def serve(name: str, html: str) -> tuple[int, str]:
        path = "/" + re.sub(r"[^a-z0-9]+", "-", name.lower())
        pages[path] = f"<!doctype html><html><body>{html}</body></html>".encode()
        return server.server_address[1], path

    yield serve
    server.shutdown()
    server.server_close()


def _context(browser, service, agent: str):
    return browser.new_context(
        accept_downloads=True, user_agent=agent, http_credentials={"username": "admin", "password": service.password}
    )


def _attempts(service, agent: str) -> list[dict]:
    """The audit log's lines for backup attempts by `agent` (the log has one per attempt; the
    in-memory list counts refusals per client and minute)."""
    entries = [
        json.loads(line.split("backup_svc.audit: ", 1)[1])
        for line in service.log().splitlines()
        if "backup_svc.audit: " in line
    ]
    return [e for e in entries if e.get("event") == "backup" and e["user_agent"] == agent]


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_another_page_cannot_start_a_dump(browser, linked_service, other_pages, vector, site):
    agent = f"Chromium-initiative-{vector}-{site}".replace(" ", "_")
    port, path = other_pages(f"{vector}-{site}", VECTORS[vector].format(url=f"{linked_service.base_url}/api/v1/backup"))
    host = "localhost" if site == "cross-site" else "127.0.0.1"
    context = _context(browser, linked_service, agent)
    try:
        page = context.new_page()
        page.goto(f"http://{host}:{port}{path}")
        assert wait_until(lambda: _attempts(linked_service, agent), 15), "the request never reached the service"
        # Without the rule, the browser answers the 401 with the cached login and a dump follows:
        # give it the time to try.
        wait_until(lambda: any(e["status"] != 403 for e in _attempts(linked_service, agent)), 2)
    finally:
        context.close()
    attempts = _attempts(linked_service, agent)
    assert [(e["status"], e["outcome"], e["actor"]) for e in attempts] == [(403, "denied", None)] * len(attempts)
    assert all("another site" in e["error"] for e in attempts)


def test_the_refusal_page_links_to_the_dashboard(browser, linked_service, other_pages):
    port, path = other_pages(
        "refusal-page", VECTORS["location.href"].format(url=f"{linked_service.base_url}/api/v1/backup")
    )
    context = _context(browser, linked_service, "Chromium-initiative-refusal-page")
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{port}{path}")
        page.wait_for_url(f"{linked_service.base_url}/api/v1/backup")
        link = page.get_by_role("link", name="Back to the dashboard")
        link.click()
        page.wait_for_url(f"{linked_service.base_url}/")
        assert page.get_by_role("button", name="Download backup").is_visible()
    finally:
        context.close()


@pytest.mark.parametrize("how", ["location.href", "a download"])
def test_a_signed_link_from_another_site_still_downloads(browser, linked_service, other_pages, tmp_path, how):
    link = signed_backup_url(linked_service.base_url, LINK_SECRET, 120)
    port, path = other_pages(f"signed-{how}", VECTORS[how].format(url=link))
    agent = f"Chromium-initiative-signed-{how}".replace(" ", "_")
    context = browser.new_context(accept_downloads=True, user_agent=agent)  # no login: the link is the credential
    try:
        page = context.new_page()
        with page.expect_download() as download_info:
            page.goto(f"http://localhost:{port}{path}", wait_until="commit")
        download = download_info.value
        saved = tmp_path / "signed.sql.gz"
        download.save_as(saved)
    finally:
        context.close()
    assert gzip_is_valid(saved.read_bytes())
    served = wait_until(lambda: [e for e in _attempts(linked_service, agent) if e["status"] == 200], 10)
    assert served and served[0]["actor"] == "signed link" and served[0]["outcome"] == "ok"


def test_the_dashboard_button_and_a_typed_url_still_download(browser, linked_service, tmp_path):
    context = _context(browser, linked_service, "Chromium-initiative-own")
    try:
        page = context.new_page()
        page.goto(f"{linked_service.base_url}/")
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download backup").click()
        assert gzip_is_valid(open(download_info.value.path(), "rb").read())
        typed = context.new_page()
        with typed.expect_download() as download_info:
            try:
                typed.goto(f"{linked_service.base_url}/api/v1/backup")
            except Exception as exc:  # a navigation that turns into a download "fails" in Playwright
                assert "Download is starting" in str(exc)
        assert gzip_is_valid(open(download_info.value.path(), "rb").read())
    finally:
        context.close()

    # Each is recorded when its response closes, a moment after the browser has the last byte.
    def completed() -> int:
        return [(e["status"], e["outcome"]) for e in _attempts(linked_service, "Chromium-initiative-own")].count(
            (200, "ok")
        )

    assert wait_until(lambda: completed() == 2, 10), completed()
