"""How a PostgreSQL client program is run: an argument list and an environment, the password only in the latter."""
from __future__ import annotations

import re
from dataclasses import dataclass

# A PostgreSQL version as programs print it: "15.18", "17" (of "17beta1"), "9.6".
VERSION = re.compile(r"(\d+)(?:\.(\d+))?")


@dataclass
class ClientCommand:
    """The argument list and environment that run one pg_dump or psql; never a secret in `argv`."""

    argv: list[str]
    env: dict[str, str]


def version_tuple(text: str) -> tuple[int, ...]:
    """(15, 18) from "15.18 (Debian 15.18-0+deb12u1)", (17,) from "17beta1"; () without a version."""
    match = VERSION.match(text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else ()
