"""A restore drill of a backup stored on an rclone remote: streamed through `rclone cat` (no temp file)
into a scratch database, checked like any drill (drill.py); the sha256 comes from its `.sha256` companion, the
dump-time row counts (when the upload recorded them) from its ownership record."""

from __future__ import annotations

from typing import Callable

from backup_svc.notify.drill import DrillReport, run_drill
from backup_svc.notify.drillbounds import drill_timeout_s
from backup_svc.notify.stored import StoredSetup, failure_reason
from backup_svc.storage.rclone_reader import IterStream
from backup_svc.storage.rclone_run import companions
from backup_svc.storage.rclone_target import RcloneTarget
from backup_svc.timefmt import utc_now


def drill_remote_file(
    setup: StoredSetup, target: RcloneTarget, name: str, *, say: Callable[[str], None] = lambda _: None
) -> DrillReport:
    """Drill `name` in the target's folder; never raises for a failed drill (the report says why)."""
    url = f"rclone:{target.location.target(name)}"
    try:
        listed = {e["Name"]: e for e in target.entries("")}
        if name not in listed:
            raise FileNotFoundError(f"{url} does not exist")
        sha256, record = companions(target, name, listed)  # the record keeps the dump-time row counts
        size = int(listed[name]["Size"])
    except Exception as exc:  # one line, as an S3 drill's
        report = DrillReport(name=name, error=f"cannot read {url}: {failure_reason(exc)}")
        report.finished = utc_now()
        return report

    def opener():
        return IterStream(url, target.open(name))

    # an age-encrypted file is decrypted with BACKUP_AGE_IDENTITY; without it the drill says it needs it
    from backup_svc.crypto.decrypt import decrypting_opener

    opener = decrypting_opener(url, opener, setup.encryption.identities)
    metadata = {k: v for k, v in record.items() if k != "sha256"} | ({"sha256": sha256} if sha256 else {})
    return run_drill(
        url,
        name,
        setup.notify.drill,
        source=setup.dump.conn,
        opener=opener,
        size=size,
        metadata=metadata,
        bin_dirs=setup.dump.pg_bin_dirs,
        timeout_s=setup.dump.connect_timeout_s,
        say=say,
        deadline_s=drill_timeout_s(setup.notify.drill_timeout_s, size),
    )
