"""What a real browser (headless Chromium) does with the service from another site and on its own pages.

The "main app" is a page served here on `localhost`; the service listens on `127.0.0.1`: two
different sites, so Chromium sends `Sec-Fetch-Site: cross-site` just as it would on Railway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time


from backup_svc.links import signed_backup_url
from tests.browser.conftest import LINK_SECRET
from tests.processes import wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying to reach Google's hosts, which this network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--dump-dom",
    "--virtual-time-budget=5000",
]


def chromium(url: str, tmp_path, *, until=None) -> tuple[str, list[str]]:
    """Load `url` in a fresh headless Chromium; the final DOM and the console messages.

    With `until`, stop Chromium as soon as `until()` is true: a navigation that became a download
    keeps `--dump-dom` waiting forever.
    """
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: run ./dev.sh test, which installs it"
    profile = tmp_path / f"profile-{time.time_ns()}"
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if until is not None:
            assert wait_until(until, timeout_s=30, interval=0.2), "Chromium's request never reached the service"
        else:
            proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return stdout, [line for line in stderr.splitlines() if ":CONSOLE" in line]


def chromium_attempts(service) -> list[dict]:
    """The audit log's lines for backup attempts Chromium made, newest first (the log has one per
    attempt; the in-memory list counts refusals per client and minute)."""
    entries = [
        json.loads(line.split("backup_svc.audit: ", 1)[1])
        for line in service.log().splitlines()
        if "backup_svc.audit: " in line
    ]
    return [e for e in reversed(entries) if e.get("event") == "backup" and "Chrome" in (e["user_agent"] or "")]


def test_main_app_link_starts_a_backup_and_another_sites_image_and_fetch_are_refused(
    linked_service, other_site, tmp_path
):
    """An <img> and a no-cors fetch of a signed link on another site are refused (403, "another site"); the
    same link clicked starts a backup, recorded as the signed link's. Whether bytes reached Chromium is not
    checked: Chromium is stopped once the dump started, which may be before its first byte."""
    link = signed_backup_url(linked_service.base_url, LINK_SECRET, 120)
    # First a script and an image on another site: both must be refused before the link is clicked.
    hostile = other_site(
        f'<img src="{link}"><script>fetch("{link}", {{mode: "no-cors", credentials: "include"}})</script>'
    )
    chromium(hostile, tmp_path)
    refused = chromium_attempts(linked_service)
    assert [(e["status"], e["outcome"]) for e in refused] == [(403, "denied")] * 2
    assert all("another site" in e["error"] for e in refused)

    page = other_site(
        f'<a id="backup" href="{link}">Download a backup</a><script>document.getElementById("backup").click()</script>'
    )

    def download_started():
        facts = linked_service.request("GET", "/api/v1/database", linked_service.auth()).json()
        return facts["dumps_in_progress"] > 0 or any(e["status"] == 200 for e in chromium_attempts(linked_service))

    chromium(page, tmp_path, until=download_started)
    # The attempt is recorded when its response closes: finished, cut when Chromium was stopped, or
    # (status null, "aborted") stopped before its first byte because Chromium left while pg_dump started.
    served = wait_until(
        lambda: [e for e in chromium_attempts(linked_service) if e["status"] == 200 or e["outcome"] == "aborted"], 20
    )
    assert served, "the download was not recorded"
    assert served[0]["actor"] == "signed link"


def test_dashboard_cannot_be_framed_by_another_site(linked_service, other_site, tmp_path):
    page = other_site(f'<iframe src="{linked_service.base_url}/"></iframe>')
    _, console = chromium(page, tmp_path)
    assert any("frame-ancestors 'none'" in line for line in console), console


def test_dashboard_loads_without_content_security_policy_violations(linked_service, tmp_path):
    url = f"http://admin:{linked_service.password}@127.0.0.1:{linked_service.port}/"
    dom, console = chromium(url, tmp_path)
    assert "backup_svc" in dom  # the page itself, not a login error
    assert not [line for line in console if "Content Security Policy" in line], console
