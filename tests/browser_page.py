"""What browser tests do to a dashboard page beyond clicking: slow its network, read the progress id it chose,
wait for the stored backups' list; and the names they give seeded backups."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from playwright.sync_api import expect

# How long a page may take to show what a real service, PostgreSQL and S3 server did.
SLOW_MS = 60_000


def throttle(page, bytes_per_s: int) -> None:
    """Slow the page's network (downloads included) through the DevTools protocol.

    Not a fake: the bytes still flow from the real service; this keeps a dump in its data phase long
    enough to act on it and to watch it, as a slow connection would.
    """
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": bytes_per_s, "uploadThroughput": -1},
    )


def backup_id(page) -> str:
    """The progress id the page chose, from its download iframe's URL."""
    src = page.locator("iframe").get_attribute("src")
    match = re.search(r"progress_id=([A-Za-z0-9_-]+)", src or "")
    assert match, f"no download iframe with a progress id: {src!r}"
    return match.group(1)


def stamp(age: timedelta) -> str:
    """A backup name's time part for `age` ago (UTC)."""
    return f"{datetime.now(timezone.utc) - age:%Y%m%d_%H%M%S}"


def wait_for_list(page) -> None:
    """Until the "Stored backups" section has loaded its list."""
    expect(page.locator("#stored")).to_have_attribute("data-loaded", "true", timeout=SLOW_MS)
