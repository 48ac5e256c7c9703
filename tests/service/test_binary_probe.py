"""`probe_soon`: the installed pg_dumps are asked for their versions while `upload` loads its modules, and the
dump takes that answer instead of asking again (issue 25: pg_dump starts ~0.05 s sooner)."""

from __future__ import annotations

import os
import threading

from backup_svc.pg.binaries import find_binaries, probe_soon


def program(folder, version: str) -> None:
    """A `pg_dump` in `folder` that answers `--version` with `version`, as PostgreSQL's does."""
    path = folder / "pg_dump"
    path.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {version}'\n")
    os.chmod(path, 0o755)


def test_a_probe_started_early_is_the_answer_and_is_taken_once(tmp_path):
    """The program is replaced between the probe and the call (a stand-in for an upgrade: nothing else can
    change a binary's answer), so only a reused probe can still report the first version; the next call
    asks again."""
    program(tmp_path, "15.99")
    probe_soon("pg_dump", [str(tmp_path)])
    probing = [t for t in threading.enumerate() if t.name == "find-pg_dump"]
    for thread in probing:
        thread.join(timeout=10)
    program(tmp_path, "16.1")

    first = find_binaries("pg_dump", [str(tmp_path)])
    again = find_binaries("pg_dump", [str(tmp_path)])

    assert probing, "probe_soon started no thread"
    assert [(b.path, b.version, b.major) for b in first] == [(str(tmp_path / "pg_dump"), "15.99", 15)]
    assert [(b.version, b.major) for b in again] == [("16.1", 16)]


def test_a_probe_for_other_folders_is_not_taken(tmp_path):
    """The answer belongs to the folders it was asked for: a call with other folders probes them itself."""
    early, other = tmp_path / "early", tmp_path / "other"
    early.mkdir()
    other.mkdir()
    program(early, "15.99")
    program(other, "17.2")
    probe_soon("pg_dump", [str(early)])

    found = find_binaries("pg_dump", [str(other)])
    early_found = find_binaries("pg_dump", [str(early)])

    assert [(b.version, b.major) for b in found] == [("17.2", 17)]
    assert [(b.version, b.major) for b in early_found] == [("15.99", 15)]
