"""`history --check`: does every event still match its name, and is each process run's chain whole?

Evidence, not protection: an edited, replaced or deleted event shows up here, but whoever holds the
bucket's credentials can also rewrite a whole run consistently, or delete a run's newest events (a chain
cannot tell a run that ended from one whose tail was removed).
"""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .bucket import HistoryBucket
from .event import canonical, digest, parse_name

READ_WORKERS = 4


@dataclass
class CheckReport:
    """What the check found: counts, problems (edits, gaps) and notes (runs older than the history kept)."""

    events: int = 0
    runs: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _examine(name: str, data: bytes, report: CheckReport, runs: dict) -> None:
    facts = parse_name(name)
    sha = digest(data)
    if not sha.startswith(facts.hash16):
        report.problems.append(f"{name}: edited — its content no longer matches the hash in its name")
    try:
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError:
        report.problems.append(f"{name}: not a valid event (not a JSON object)")
        return
    if canonical(body) != data:
        report.problems.append(f"{name}: edited — not written the way this service writes events")
    if body.get("run") != facts.run or body.get("seq") != facts.seq:
        report.problems.append(f"{name}: its run or number differs from its name")
    runs[facts.run][facts.seq] = (name, sha, body.get("prev"))


def check_history(bucket: HistoryBucket) -> CheckReport:
    """Read every event under the history prefix and check names, hashes and each run's chain. StorageError."""
    report = CheckReport()
    names = [name for day in sorted(bucket.days()) for name in bucket.names(day)]
    runs: dict[str, dict[int, tuple]] = defaultdict(dict)
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        for name, data in zip(names, pool.map(bucket.raw, names)):
            report.events += 1
            _examine(name, data, report, runs)
    report.runs = len(runs)
    for run, chain in sorted(runs.items(), key=lambda item: min(v[0] for v in item[1].values())):
        seqs = sorted(chain)
        if seqs[0] != 0:
            report.notes.append(
                f"run {run} starts at event #{seqs[0]}: the earlier ones are missing (deleted by "
                f"BACKUP_HISTORY_DAYS if they were that old)"
            )
        for before, after in zip(seqs, seqs[1:]):
            if after != before + 1:
                report.problems.append(
                    f"run {run}: events #{before + 1}–#{after - 1} are missing (between "
                    f"{chain[before][0]} and {chain[after][0]})"
                )
            elif chain[after][2] != chain[before][1]:
                report.problems.append(
                    f"run {run}: {chain[after][0]} does not follow {chain[before][0]} — "
                    f"the earlier one was edited or replaced"
                )
    return report


def report_lines(report: CheckReport) -> list[str]:
    """The check's result in lines, problems first."""
    lines = [f"PROBLEM {p}" for p in report.problems] + [f"note    {n}" for n in report.notes]
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    lines.append(
        f"history check: {verdict} — {report.events} events from {report.runs} process run(s); "
        "this is evidence of edits and gaps, not protection against someone holding the bucket's keys"
    )
    return lines
