"""age recipients (public keys) and identities (private keys): parsed, labelled and matched.

Recipients: `age1…` X25519 keys and SSH `ssh-ed25519` / `ssh-rsa` public keys. Identities: the
lines of an age key file (`AGE-SECRET-KEY-1…`) or one unencrypted OpenSSH / PEM private key. No
message here ever quotes a private key; identities print as `<age identity>`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field

import pyrage
from pyrage import ssh, x25519

SSH_TYPES = ("ssh-ed25519", "ssh-rsa")
_SEPARATORS = re.compile(r"[,\n]")


class BadKey(ValueError):
    """A recipient or identity that cannot be used; the message names it without any secret."""


@dataclass(frozen=True)
class Recipient:
    """One public key backups are encrypted to: `text` as configured (SSH comment dropped), a `label`
    to show (the age key, or the SSH key's SHA256 fingerprint as `ssh-keygen -l` prints it)."""

    text: str
    kind: str  # "age", "ssh-ed25519" or "ssh-rsa"
    label: str
    key: object = field(compare=False, repr=False)


@dataclass(frozen=True)
class Identity:
    """One private key; `kind` is "age" or "ssh". Its repr never shows the key."""

    kind: str
    key: object = field(compare=False, repr=False)

    def __repr__(self) -> str:
        return f"<{self.kind} identity>"


def ssh_fingerprint(blob_b64: str) -> str:
    """`SHA256:…` of an SSH public key's base64 blob, the form `ssh-keygen -lf key.pub` prints."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:20] + "…")


def parse_recipient(text: str) -> Recipient:
    """One recipient (`age1…`, `ssh-ed25519 AAAA… [comment]`, `ssh-rsa AAAA… [comment]`); BadKey otherwise."""
    text = text.strip()
    if text.upper().startswith("AGE-SECRET-KEY-") or "PRIVATE KEY" in text:
        raise BadKey(
            "holds a private key: put only public keys here (age-keygen -y KEYFILE prints an age "
            "key's public half), and keep the private key off the server or in BACKUP_AGE_IDENTITY"
        )
    if text.startswith("age1"):
        try:
            return Recipient(text=text, kind="age", label=text, key=x25519.Recipient.from_str(text))
        except pyrage.RecipientError as exc:
            raise BadKey(f"{_shown(text)} is not a valid age recipient ({exc})") from None
    fields = text.split()
    if len(fields) >= 2 and fields[0] in SSH_TYPES:
        kind, blob = fields[0], fields[1]
        try:
            key = ssh.Recipient.from_str(f"{kind} {blob}")
            label = f"{kind} {ssh_fingerprint(blob)}"
        except (pyrage.RecipientError, ValueError) as exc:
            raise BadKey(f"{_shown(text)} is not a valid {kind} public key ({exc})") from None
        return Recipient(text=f"{kind} {blob}", kind=kind, label=label, key=key)
    raise BadKey(
        f"{_shown(text)} is neither an age recipient (age1…) nor an SSH public key (ssh-ed25519 … or ssh-rsa …)"
    )


def parse_recipients(text: str) -> list[Recipient]:
    """Comma- or newline-separated recipients (blank entries and `#` comment lines skipped), duplicates once."""
    found: list[Recipient] = []
    for entry in _SEPARATORS.split(text or ""):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        recipient = parse_recipient(entry)
        if recipient not in found:
            found.append(recipient)
    return found


def _looks_like_key(value: str) -> bool:
    return value.upper().startswith("AGE-SECRET-KEY-") or "-----BEGIN" in value or "\n" in value


def load_identities(value: str) -> list[Identity]:
    """BACKUP_AGE_IDENTITY: a file path, or the key itself (`AGE-SECRET-KEY-1…` lines, or an SSH private key)."""
    value = value.strip()
    if _looks_like_key(value):
        return parse_identities(value)
    try:
        with open(os.path.expanduser(value), encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        where = _shown(value) if value.startswith(("/", "./", "../", "~")) else "the value"
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise BadKey(
            f"is neither an AGE-SECRET-KEY-1… value, an SSH private key nor a readable key file ({where}: {reason})"
        ) from None
    return parse_identities(text)


def parse_identities(text: str) -> list[Identity]:
    """The identities in a key file's text; BadKey (never quoting the key) when there is none or one is bad."""
    if "-----BEGIN" in text:
        try:
            return [Identity("ssh", ssh.Identity.from_buffer(text.strip().encode() + b"\n"))]
        except pyrage.IdentityError as exc:
            if "decrypted" in str(exc):
                raise BadKey(
                    "is a passphrase-protected SSH key, which the service cannot unlock: use an age key, "
                    "or an unencrypted copy of the SSH key kept as safely as the original"
                ) from None
            raise BadKey(f"holds an SSH private key that cannot be read ({exc})") from None
    identities = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(Identity("age", x25519.Identity.from_str(line)))
        except pyrage.IdentityError:
            raise BadKey(f"line {number} is not an age secret key (AGE-SECRET-KEY-1…) or an SSH private key") from None
    if not identities:
        raise BadKey("holds no key (expected AGE-SECRET-KEY-1… lines or an SSH private key)")
    return identities


def matching_recipients(identities: list[Identity], recipients: list[Recipient]) -> list[Recipient]:
    """The recipients whose files these identities decrypt: a small probe encrypted to each, then
    decrypted (works for every key type, SSH keys included, without deriving public keys)."""
    keys = [i.key for i in identities]
    matched = []
    for recipient in recipients:
        probe = pyrage.encrypt(b"backup_svc key probe", [recipient.key])
        try:
            pyrage.decrypt(probe, keys)
        except pyrage.DecryptError:
            continue
        matched.append(recipient)
    return matched
