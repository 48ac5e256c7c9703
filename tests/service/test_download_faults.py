"""Whatever fails during a download — before, while or after its headers — frees the slot and is audited.

Faults the real parts cannot be made to produce on demand are injected with a test-only
`sitecustomize` module (FAULT_HOOK below) that the service's Python loads at start-up: the product
has no hook of its own. Each stage fails the first download only; the next one must succeed.
"""

from __future__ import annotations

import pytest

from tests.http_client import gzip_is_valid
from tests.processes import pg_dump_pids, wait_until

FAULT_HOOK = """
import os
stage = os.environ.get("INJECT_FAULT")
if stage:
    from backup_svc.dump import pipeline
    from backup_svc.web import api

    class InjectedFault(RuntimeError):
        pass

    left = [1]  # only the first download fails

    def firing():
        if left[0] > 0:
            left[0] -= 1
            return True
        return False

    if stage == "before-headers":
        original_open = api.open_dump
        def open_dump(*args, **kwargs):
            if firing():
                raise InjectedFault("injected before the headers")
            return original_open(*args, **kwargs)
        api.open_dump = open_dump
    elif stage == "building-headers":
        # What a database or BACKUP_NAME outside Latin-1 used to do: gunicorn refuses the header.
        original_headers = api.download_headers
        def download_headers(filename):
            headers = original_headers(filename)
            if firing():
                headers["X-Injected"] = "\\u0431\\u0430\\u0437\\u0430"
            return headers
        api.download_headers = download_headers
    elif stage in ("first-chunk", "mid-stream"):
        original_iter = pipeline.GzipDump.__iter__
        fail_at = 0 if stage == "first-chunk" else 1
        def iterate(self):
            fire = firing()
            for n, chunk in enumerate(original_iter(self)):
                if fire and n == fail_at:
                    raise InjectedFault("injected while streaming")
                yield chunk
        pipeline.GzipDump.__iter__ = iterate
    elif stage == "at-close":
        original_close = pipeline.GzipDump.close
        def close(self):
            original_close(self)
            if firing():
                raise InjectedFault("injected at close")
        pipeline.GzipDump.close = close
"""


@pytest.fixture
def fault_hook(tmp_path):
    folder = tmp_path / "hook"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(FAULT_HOOK)
    return str(folder)


@pytest.mark.parametrize(
    "stage,status,outcome",
    [
        ("before-headers", 500, "failed"),
        ("building-headers", 500, "failed"),
        ("first-chunk", 500, "failed"),
        ("mid-stream", 200, "failed"),
        ("at-close", 200, "ok"),  # the whole file was sent before the failure
    ],
)
def test_a_failure_at_any_stage_frees_the_slot_and_is_audited(
    stage, status, outcome, fault_hook, rich_db, start_service, pg_cluster
):
    service = start_service(DATABASE_URL=rich_db, PYTHONPATH=fault_hook, INJECT_FAULT=stage)

    failed = service.request("GET", "/api/v1/backup", service.auth())
    assert failed.status == status
    assert b"Traceback" not in failed.body and b"InjectedFault" not in failed.body
    if stage == "mid-stream":
        assert not failed.complete and not gzip_is_valid(failed.body)

    def recorded():
        entries = service.request("GET", "/api/v1/audit", service.auth()).json()["entries"]
        return entries if entries and entries[0]["outcome"] == outcome else None

    entries = wait_until(recorded, 10)
    assert entries, f"no audit entry with outcome {outcome!r}"
    assert len(entries) == 1
    if outcome == "failed":
        assert entries[0]["error"] and "Injected" not in entries[0]["error"]
    assert wait_until(lambda: not pg_dump_pids(pg_cluster), 10), "pg_dump left running"

    again = service.request("GET", "/api/v1/backup", service.auth())
    assert again.status == 200 and again.complete and gzip_is_valid(again.body)
