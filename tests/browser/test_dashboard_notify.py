"""The dashboard's "Notifications and restore drills" section in a real Chromium: stale backups and a
webhook that keeps failing are shown, without the webhook's secret path."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from backup_svc.storage.client import make_client
from tests import receivers
from tests.processes import wait_until
from tests.s3support import MotoS3, cluster_identity, new_bucket, owned, s3_env, seed_backup

HOOK = "/services/T0AAAA/B0BBBB/hooksecretXYZ123"


@pytest.fixture(scope="module")
def moto():
    server = MotoS3().start()
    yield server
    server.stop()


def test_stale_backups_and_a_failing_webhook_are_shown(moto, rich_db, pg_cluster, start_service, open_dashboard):
    client = make_client(s3_env(moto.endpoint))
    bucket = new_bucket(client)
    seed_backup(
        client, bucket, "nightly/rich_backup_20260101_030000.sql.gz", owner=owned(cluster_identity(pg_cluster), "rich")
    )
    with receivers.receivers() as make:
        hook = make([500] * 10)
        service = start_service(
            DATABASE_URL=rich_db,
            BACKUP_STORAGE_URL=f"s3://{bucket}/nightly",
            BACKUP_SCHEDULE="0 3 * * *",
            NOTIFY_WEBHOOK_URL=hook.url + HOOK,
            **s3_env(moto.endpoint),
        )
        # the staleness watch alarms at start; the webhook answers 500 to each of its 3 attempts
        assert wait_until(lambda: len(hook.requests) >= 3, 30), service.log()[-2000:]
        page = open_dashboard(service)
        expect(page.locator("#stale")).to_contain_text("Backups are stale.", timeout=15_000)
        expect(page.locator("#stale")).to_contain_text("No successful stored backup since 2026-01-01T03:00:00Z")

        def problem_shown() -> bool:  # the last attempt's outcome is recorded just after its answer
            page.reload()
            return page.locator("#delivery-problem").count() == 1

        assert wait_until(problem_shown, 15, interval=0.5)
        problem = page.locator("#delivery-problem")
        expect(problem).to_contain_text("webhook")
        expect(problem).to_contain_text("answered 500")
        expect(page.locator("#proven")).to_contain_text("no restore drill has passed")
        assert "hooksecret" not in page.content()
