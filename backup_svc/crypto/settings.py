"""BACKUP_AGE_RECIPIENTS and BACKUP_AGE_IDENTITY, validated: one problem line each, naming the variable
and the bad entry, never quoting a private key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Mapping

from .decrypt import decrypting_opener
from .keys import BadKey, Identity, Recipient, load_identities, parse_recipients

RECIPIENTS = "BACKUP_AGE_RECIPIENTS"
IDENTITY = "BACKUP_AGE_IDENTITY"


@dataclass(frozen=True)
class EncryptionSettings:
    """Who stored backups are encrypted to (empty: stored in the clear) and what decrypts them (may be empty)."""

    recipients: tuple[Recipient, ...] = ()
    identities: tuple[Identity, ...] = field(default=(), repr=False)

    @property
    def encrypts(self) -> bool:
        return bool(self.recipients)


def recipients_from_env(env: Mapping[str, str], problems: list[str]) -> tuple[Recipient, ...]:
    """The recipients in BACKUP_AGE_RECIPIENTS (none when unset); a problem line for a malformed one."""
    try:
        return tuple(parse_recipients(env.get(RECIPIENTS, "")))
    except BadKey as exc:
        problems.append(f"{RECIPIENTS}: {exc}")
        return ()


def identities_from_env(env: Mapping[str, str], problems: list[str]) -> tuple[Identity, ...]:
    """The identities BACKUP_AGE_IDENTITY holds or names (none when unset); a problem line when unusable."""
    value = env.get(IDENTITY, "").strip()
    if not value:
        return ()
    try:
        return tuple(load_identities(value))
    except BadKey as exc:
        problems.append(f"{IDENTITY} {exc}")
        return ()


def encryption_settings(env: Mapping[str, str], problems: list[str]) -> EncryptionSettings:
    """Both variables; problems appended (the service refuses to start on any)."""
    return EncryptionSettings(
        recipients=recipients_from_env(env, problems), identities=identities_from_env(env, problems)
    )


def reading_opener(path: str, opener: Callable[[], BinaryIO] | None, env: Mapping[str, str]) -> Callable[[], BinaryIO]:
    """For `verify`, `restore` and `drill` run from the shell: an opener that decrypts an age file with
    BACKUP_AGE_IDENTITY (and passes a plain one through); BadKey (a ValueError) when the variable is
    set but unusable."""
    problems: list[str] = []
    identities = identities_from_env(env, problems)
    if problems:
        raise BadKey(problems[0])
    return decrypting_opener(path, opener, identities)


def check_lines(encryption: EncryptionSettings) -> list[str]:
    """For `check`: whether stored backups are encrypted, to whom, and whether the identity matches a recipient."""
    from .keys import matching_recipients

    lines = []
    if encryption.recipients:
        labels = ", ".join(r.label for r in encryption.recipients)
        lines.append(
            f"encryption: on — stored backups are age-encrypted to {len(encryption.recipients)} "
            f"recipient{'s' if len(encryption.recipients) != 1 else ''}: {labels}"
        )
    else:
        lines.append(f"encryption: off — stored backups are kept in the clear ({RECIPIENTS} is not set)")
    if not encryption.identities:
        lines.append(
            f"identity: not set ({IDENTITY}) — encrypted backups are listed and downloaded, but "
            f"restores, drills and verify here need it"
        )
        return lines
    matched = matching_recipients(list(encryption.identities), list(encryption.recipients))
    if matched:
        lines.append(f"identity: ok — {IDENTITY} decrypts backups encrypted to " + ", ".join(r.label for r in matched))
    elif encryption.recipients:
        lines.append(
            f"identity: warning — {IDENTITY} matches none of {RECIPIENTS}: it can read older backups "
            f"made for it, but not the new ones (restores and drills of those will fail)"
        )
    else:
        lines.append("identity: set — it decrypts age-encrypted backups made elsewhere")
    return lines
