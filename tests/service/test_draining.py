"""RAILWAY_DEPLOYMENT_DRAINING_SECONDS on the real service: the start-up log warns when a redeploy would cut
downloads, `check` reports the draining and the grace in force, and gunicorn really uses the shortened
grace (a download is cut when the draining ends, not when GRACEFUL_TIMEOUT would have)."""

from __future__ import annotations

import os
import signal
import time

from tests.http_client import gzip_is_valid, read_all
from tests.processes import pg_dump_pids, wait_until

ON_RAILWAY = {"RAILWAY_ENVIRONMENT_ID": "6f1c2a9e-test", "RAILWAY_SERVICE_ID": "0d4b-test"}


def test_draining_of_zero_on_railway_is_warned_at_start_up_and_by_check(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db, RAILWAY_DEPLOYMENT_DRAINING_SECONDS="0", **ON_RAILWAY)

    assert service.request("GET", "/healthz").status == 200  # a warning, not a refusal
    assert (
        "[WARNING] backup_svc.server: draining: RAILWAY_DEPLOYMENT_DRAINING_SECONDS=0: a redeploy cuts "
        "every running download at once; set it to 75 or more"
    ) in service.log()
    check = service.check()
    assert check.returncode == 0, check.stdout
    assert "draining: 0 s (RAILWAY_DEPLOYMENT_DRAINING_SECONDS); downloads get 1 s after SIGTERM" in check.stdout
    assert "draining: warning — RAILWAY_DEPLOYMENT_DRAINING_SECONDS=0: a redeploy cuts" in check.stdout


def test_missing_draining_on_railway_is_warned(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db, **ON_RAILWAY)

    assert "draining: RAILWAY_DEPLOYMENT_DRAINING_SECONDS is not set: unless" in service.log()
    assert "draining: warning — RAILWAY_DEPLOYMENT_DRAINING_SECONDS is not set" in service.check().stdout


def test_draining_that_covers_the_grace_is_logged_without_a_warning(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db, RAILWAY_DEPLOYMENT_DRAINING_SECONDS="90", **ON_RAILWAY)

    log = service.log()
    assert "[INFO] backup_svc.server: draining: 90 s (RAILWAY_DEPLOYMENT_DRAINING_SECONDS); downloads get 60 s" in log
    assert "[WARNING] backup_svc.server: draining" not in log
    check = service.check()
    assert "draining: 90 s" in check.stdout and "draining: warning" not in check.stdout


def test_off_railway_without_the_variable_nothing_is_said(rich_db, start_service):
    service = start_service(DATABASE_URL=rich_db)

    assert "draining" not in service.log()
    assert (
        "draining: RAILWAY_DEPLOYMENT_DRAINING_SECONDS not set (not on Railway); downloads get 60 s"
        in service.check().stdout
    )


def test_a_short_draining_shortens_the_grace_gunicorn_gives_a_running_download(big_db, start_service, pg_cluster):
    """GRACEFUL_TIMEOUT=60 but 17 s of draining: the grace in force is 2 s, so a download the client
    stops reading is cut about 2 s after SIGTERM and the process exits, well before the 60 s."""
    service = start_service(DATABASE_URL=big_db, GRACEFUL_TIMEOUT="60", RAILWAY_DEPLOYMENT_DRAINING_SECONDS="17")
    assert "downloads get 2 s after SIGTERM" in service.log()
    conn, resp = service.start_download()
    assert resp.status == 200
    first = resp.read(65536)

    started = time.monotonic()
    os.kill(service.proc.pid, signal.SIGTERM)
    time.sleep(3.5)  # the client reads nothing meanwhile, so the dump cannot finish within the grace
    rest, complete = read_all(resp)
    conn.close()

    assert not complete and not gzip_is_valid(first + rest)
    assert service.proc.wait(timeout=15) is not None
    assert time.monotonic() - started < 20
    # The process too ends with the grace, not only the download (a longer grace lets the dump finish,
    # which `complete` catches); the 3.5 s wait above is the floor of this measure.
    exited = time.monotonic() - started
    assert exited < 9, f"the service exited {exited:.1f} s after SIGTERM, long after its 2 s grace"
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 5)
