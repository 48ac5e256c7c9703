"""How every command talks: results on stdout; progress and problems on stderr, `backup_svc: ` first.

Exit statuses: 0 done, 1 failed, 2 refused (the configuration or the arguments are wrong).
"""

from __future__ import annotations

import sys

PREFIX = "backup_svc: "
FAILED = 1
REFUSED = 2


def say(line: str) -> None:
    """A progress or problem line on stderr, `backup_svc: ` first."""
    print(PREFIX + line, file=sys.stderr, flush=True)


def note(line: str) -> None:
    """A line on stderr as it is (a continuation, or a step of a longer report)."""
    print(line, file=sys.stderr, flush=True)


def fail(line: str) -> int:
    """Say why the command failed; its exit status (1)."""
    say(line)
    return FAILED


def refuse(problems: list[str]) -> int:
    """Say each problem on its own line; the exit status of a refusal (2)."""
    for problem in problems:
        say(problem)
    return REFUSED
