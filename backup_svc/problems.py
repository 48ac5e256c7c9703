"""The one error a settings reader raises: every problem it found, one line each.

At the bottom of the package: each room's settings reader (storage, notify, pg) may raise it, and
`config` composes them."""

from __future__ import annotations


class ConfigError(Exception):
    """The environment cannot run the service; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems
