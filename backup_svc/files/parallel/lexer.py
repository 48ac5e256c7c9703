"""Where SQL statements end in pg_dump's script text (outside COPY data), one line at a time.

Only enough of PostgreSQL's lexer to know whether a line starts at a statement boundary: quoted
strings (with E'' escapes), quoted identifiers (which may hold newlines), dollar quotes, block
comments (nested) and `--` comments. A line that merely looks like a pg_dump header comment but
sits inside a function body or a quoted name is then not taken for one.
"""

from __future__ import annotations

import re

# What can change the lexer's state in plain SQL text.
_TOKEN = re.compile(rb"--|/\*|'|\"|;|\$(?:[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$")
_IDENT_CHAR = re.compile(rb"[A-Za-z_0-9\x80-\xff$]")
_E_STRING_END = re.compile(rb"\\.|'", re.DOTALL)
_BLOCK = re.compile(rb"/\*|\*/")


class StatementLexer:
    """Feed it lines (without their newline); `at_boundary` says whether the next line starts a statement."""

    def __init__(self) -> None:
        self._state: str | None = None  # None, "'", "E'", '"', "$" (dollar quote), "/*"
        self._tag = b""  # the dollar quote's delimiter
        self._depth = 0  # nesting of block comments
        self.pending = False  # statement text seen since the last `;`
        self.ended = 0  # statements ended so far (`;` outside quotes and comments)

    @property
    def at_boundary(self) -> bool:
        return self._state is None and not self.pending

    def line(self, text: bytes) -> None:
        """Follow one line of SQL; the newline that ends it is implied."""
        i, n = 0, len(text)
        while i < n:
            state = self._state
            if state is None:
                m = _TOKEN.search(text, i)
                end = m.start() if m else n
                if text[i:end].strip():
                    self.pending = True
                if m is None:
                    return
                token, i = m.group(), m.end()
                if token == b"--":
                    return
                if token == b";":
                    self.pending = False
                    self.ended += 1
                elif token == b"/*":
                    self._state, self._depth = "/*", 1
                elif token == b"'":
                    self.pending = True
                    before = text[: m.start()]
                    escaped = before[-1:] in (b"E", b"e") and not _IDENT_CHAR.match(before[-2:-1] or b" ")
                    self._state = "E'" if escaped else "'"
                elif token == b'"':
                    self.pending, self._state = True, '"'
                else:  # $tag$: a dollar quote, unless it is part of an identifier (foo$bar$)
                    if m.start() > 0 and _IDENT_CHAR.match(text, m.start() - 1):
                        i = m.start() + 1
                        self.pending = True
                        continue
                    self.pending, self._state, self._tag = True, "$", token
            elif state == "'" or state == '"':
                close = text.find(state.encode(), i)
                if close < 0:
                    return
                if text[close + 1 : close + 2] == state.encode():  # a doubled quote stands for itself
                    i = close + 2
                    continue
                self._state, i = None, close + 1
            elif state == "E'":
                m = _E_STRING_END.search(text, i)
                if m is None:
                    return
                if m.group() != b"'":
                    i = m.end()
                    continue
                if text[m.end() : m.end() + 1] == b"'":
                    i = m.end() + 1
                    continue
                self._state, i = None, m.end()
            elif state == "$":
                close = text.find(self._tag, i)
                if close < 0:
                    return
                self._state, i = None, close + len(self._tag)
            else:  # block comment
                m = _BLOCK.search(text, i)
                if m is None:
                    return
                self._depth += 1 if m.group() == b"/*" else -1
                i = m.end()
                if self._depth == 0:
                    self._state = None
