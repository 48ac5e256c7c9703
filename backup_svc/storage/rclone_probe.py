"""Can this service use its rclone remote? `check`'s probe, reported like S3's (probe.py's Check/ProbeReport).

What is tried, in this order, with the very calls `upload`, `list`, `prune`, `verify` and `restore` make:
  list    `lsjson` of the folder (a folder not made yet lists as empty: the first upload makes it)
  write   RcloneTarget.put of a tiny object: `rcat` under a temporary `.partial-…` name, the size check,
          `moveto` into place, the `.sha256` companion
  read    `cat` of it, compared with what was written
  delete  `deletefile` of it and its companion, then a listing that shows they are gone
The test name `backup_svc-check-<random>.tmp` never matches a backup name. A failed write removes its
temporary object as an upload does; whatever could not be removed is named (`left_behind`).
"""

from __future__ import annotations

import secrets
from typing import Mapping

from .client import StorageError
from .probe import PROBE_BODY, PROBE_NAME, Check, ProbeReport
from .rclone_target import TEMP_PREFIX, RcloneTarget

# Words in rclone's messages that mean "not allowed" rather than "went wrong".
_DENIED = (
    "403",
    "401",
    "forbidden",
    "permission denied",
    "access denied",
    "read-only",
    "read only",
    "unauthorized",
    "insufficient",
)


def _outcome(exc: StorageError) -> str:
    text = str(exc).lower()
    return "denied" if any(word in text for word in _DENIED) else "failed"


def describe_remote(remote: str, env: Mapping[str, str]) -> str:
    """Where the remote is, for messages, without secrets: its backend type and where it is configured."""
    kind = (env.get(f"RCLONE_CONFIG_{remote.upper()}_TYPE") or "").strip()
    if kind:
        return f"{kind} remote {remote!r} (RCLONE_CONFIG_{remote.upper()}_*)"
    if (env.get("RCLONE_CONFIG") or "").strip():
        return f"remote {remote!r} (from the file RCLONE_CONFIG names)"
    return (
        f"remote {remote!r}, which is not configured: set RCLONE_CONFIG_{remote.upper()}_TYPE and its other "
        'RCLONE_CONFIG_* variables, or RCLONE_CONFIG (docs/storage.md, "Any rclone remote")'
    )


def probe_rclone(target: RcloneTarget, endpoint: str) -> ProbeReport:
    """Try each thing the service does on the remote (the module docstring); never raises for rclone errors."""
    report = ProbeReport(location=target.location.url, endpoint=endpoint)
    try:
        target.list()
    except StorageError as exc:
        report.checks.append(Check("list", "failed", str(exc)))
        return report
    report.reachable = True
    report.checks.append(Check("list", "ok"))
    name = PROBE_NAME.format(secrets.token_hex(8))
    try:
        target.put(name, [PROBE_BODY])
    except StorageError as exc:
        report.checks.append(Check("write", _outcome(exc), str(exc)))
        report.left_behind += [
            target.location.target(n) for n in _names_quietly(target) if n.startswith(TEMP_PREFIX) and n.endswith(name)
        ]
        return report
    report.checks.append(Check("write", "ok"))
    try:
        body = b"".join(target.open(name))
        report.checks.append(
            Check("read", "ok")
            if body == PROBE_BODY
            else Check("read", "failed", f"read back {len(body)} bytes that differ from the {len(PROBE_BODY)} written")
        )
    except StorageError as exc:
        report.checks.append(Check("read", _outcome(exc), str(exc)))
    try:
        target.delete(name)
        left = [n for n in target.names() if n.startswith(name)]
        report.checks.append(
            Check("delete", "ok")
            if not left
            else Check("delete", "failed", f"still listed after deleting: {', '.join(left)}")
        )
    except StorageError as exc:
        report.checks.append(Check("delete", _outcome(exc), str(exc)))
        left = [n for n in _names_quietly(target) if n.startswith(name)]
    report.left_behind += [target.location.target(n) for n in left]
    return report


def _names_quietly(target: RcloneTarget) -> list[str]:
    try:
        return target.names()
    except StorageError:
        return []
