"""Removing secrets from text that may reach a client or a log."""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every given secret, URI password and `password=` value replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)
