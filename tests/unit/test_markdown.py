"""The docs as a Markdown parser reads them (markdown-it-py, the one that renders /docs/<name>).

GitHub and the dashboard render what the parser sees, not what the author meant: a blank line
inside a table turns its remaining rows into a paragraph of pipes, and a fence left open swallows
the rest of the file into one code block.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backup_svc.web.docs import markdown_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bench/*.md"))]
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_problems(text: str) -> list[str]:
    """What a reader would see broken: tables split by a blank line, fences never closed."""
    lines = text.splitlines()
    tokens = markdown_parser().parse(text)
    problems = []
    for n, token in enumerate(tokens):
        if token.type == "inline" and tokens[n - 1].type == "paragraph_open":
            rows = [line for line in token.content.splitlines() if line.strip()]
            if rows and all(line.lstrip().startswith("|") and line.rstrip().endswith("|") for line in rows):
                problems.append(
                    f"line {token.map[0] + 1}: table rows rendered as a paragraph (a blank line "
                    f"splits the table, or its header row is missing)"
                )
        if token.type == "fence":
            start, end = token.map
            closing = lines[end - 1] if end - 1 > start and end - 1 < len(lines) else ""
            marker = FENCE.match(closing)
            if not (
                marker
                and marker.group(1)[0] == token.markup[0]
                and len(marker.group(1)) >= len(token.markup)
                and not closing.strip().strip(marker.group(1)[0])
            ):
                problems.append(f"line {start + 1}: code fence {token.markup} is never closed")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_docs_have_no_broken_tables_or_open_fences(path):
    assert markdown_problems(path.read_text(encoding="utf-8")) == []


TABLE = "| a | b |\n|---|---|\n| 1 | 2 |\n"


@pytest.mark.parametrize(
    "text,problem",
    [
        (TABLE + "\n| 3 | 4 |\n| 5 | 6 |\n", "line 5: table rows rendered as a paragraph"),
        ("Intro\n\n```sh\necho hi\n\nMore text\n", "line 3: code fence ``` is never closed"),
        (
            "```sh\necho\n````text\n",
            "line 1: code fence ``` is never closed",
        ),  # a fence with an info string opens, never closes
    ],
)
def test_the_check_catches_what_it_is_for(text, problem):
    found = markdown_problems(text)
    assert found and found[0].startswith(problem), found


def test_the_check_passes_good_markdown():
    assert markdown_problems(TABLE + "\ntext | with a pipe\n\n```sh\necho\n```\n\n~~~\nx\n~~~~\n") == []


def test_security_md_lists_the_real_content_security_policy():
    from backup_svc.web.security import CONTENT_SECURITY_POLICY

    tokens = markdown_parser().parse((REPO / "docs" / "security.md").read_text(encoding="utf-8"))
    stated = [t.content.strip() for t in tokens if t.type == "fence" and t.content.startswith("default-src")]
    assert stated == [CONTENT_SECURITY_POLICY]
