"""Cancelling someone's running backup from the dashboard, in a real headless Chromium."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.databases import dump_sessions
from tests.processes import pg_dump_pids, wait_until


def test_dashboard_cancels_a_backup_started_by_a_script(rich_db, start_service, pg_cluster, open_dashboard):
    """A script's download waits behind a migration's lock; the admin sees it on the page and cancels it."""
    service = start_service(DATABASE_URL=rich_db)
    with pg_cluster.connect("rich") as migration:
        migration.execute("BEGIN")
        migration.execute("LOCK TABLE app.cache IN ACCESS EXCLUSIVE MODE")
        script = service.connection(timeout=30)
        script.request("GET", "/api/v1/backup?progress_id=script-download-1", headers=service.auth())
        try:
            assert wait_until(lambda: dump_sessions(pg_cluster), 10)
            page = open_dashboard(service)
            item = page.locator('#running-dumps li[data-backup-id="script-download-1"]')
            # Who started it is said once, in the disabled button's reason; the item holds its Cancel.
            expect(page.locator("#dl-reason")).to_contain_text("started by token")
            expect(item).not_to_contain_text("by token")
            expect(page.locator("#locks-note")).to_contain_text("ACCESS SHARE lock on every table")

            item.get_by_role("button", name="Cancel").click()

            expect(item.locator(".cancel-result")).to_have_text("Cancelled: cancelled by admin.", timeout=10_000)
            expect(item.get_by_role("button", name="Cancel")).to_be_disabled()
            reply = script.getresponse()
            assert reply.status == 409 and b"cancelled by admin" in reply.read()
            assert wait_until(lambda: not pg_dump_pids(pg_cluster) and not dump_sessions(pg_cluster), 2.0)
        finally:
            script.close()
            migration.execute("ROLLBACK")
