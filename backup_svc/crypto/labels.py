"""What an encrypted stored object says about itself in the clear: that it is age-encrypted and to which
public keys (their labels), in user metadata; and how `list` and `check` put that into words.

Public keys are no secret and say nothing about the database, so they may be shown; everything read
from the database (table names, row counts, sizes of the SQL) stays inside the encryption.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from .common import is_encrypted_name
from .keys import Recipient

ENCRYPTION = "encryption"
RECIPIENTS = "age-recipients"
# S3 allows about 2 KiB of user metadata per object; the recipients' labels get at most this much.
LABEL_BUDGET = 900


def short_label(label: str) -> str:
    """`age1abcd…wxyz` / `ssh-ed25519 SHA256:AbCd…` for a line of `list`."""
    if label.startswith("age1") and len(label) > 20:
        return f"{label[:9]}…{label[-6:]}"
    kind, _, fingerprint = label.partition(" ")
    return f"{kind} {fingerprint[:15]}…" if len(fingerprint) > 16 else label


def recipients_metadata(recipients: Iterable[Recipient]) -> dict[str, str]:
    """`encryption: age` and `age-recipients: <label>;<label>…` (as many labels as fit the budget)."""
    labels: list[str] = []
    recipients = list(recipients)
    for recipient in recipients:
        if len(";".join(labels + [recipient.label])) > LABEL_BUDGET:
            labels.append(f"+{len(recipients) - len(labels)} more")
            break
        labels.append(recipient.label)
    return {ENCRYPTION: "age", RECIPIENTS: ";".join(labels)}


def describe(name: str, metadata: Mapping[str, str] | None) -> str:
    """One word or phrase for `list`: `plain`, `age → age1abcd…wxyz, ssh-ed25519 SHA256:…`, or `age` alone."""
    metadata = metadata or {}
    if metadata.get(ENCRYPTION) != "age" and not is_encrypted_name(name):
        return "plain"
    labels = [label for label in metadata.get(RECIPIENTS, "").split(";") if label]
    if not labels:
        return "age (recipients not recorded)"
    return "age → " + ", ".join(short_label(label) for label in labels)


def recipient_labels(metadata: Mapping[str, str] | None) -> list[str]:
    """The full labels recorded with an object (empty when none were)."""
    return [label for label in (metadata or {}).get(RECIPIENTS, "").split(";") if label]
