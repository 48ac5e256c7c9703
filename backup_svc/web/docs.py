"""The repository's docs/*.md as HTML pages in the dashboard's layout (markdown-it-py, CommonMark + tables)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from markdown_it import MarkdownIt

# The checkout's docs/ folder (absent from an installed package: the dashboard then links to none).
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
DOC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")
# A link to another doc (`security.md`, `restore.md#section`) becomes a link to its page here.
_DOC_LINK = re.compile(r"(?:\./)?(?:docs/)?([a-z0-9][a-z0-9_-]{0,40})\.md(#[\w-]*)?")


def markdown_parser() -> MarkdownIt:
    """CommonMark with GitHub's tables: what GitHub shows for these files, minus its extensions."""
    return MarkdownIt("commonmark").enable("table")


def doc_path(name: str) -> Path | None:
    """The file behind `/docs/<name>`, or None when there is no such doc."""
    if not DOC_NAME.fullmatch(name):
        return None
    path = DOCS_DIR / f"{name}.md"
    return path if path.is_file() else None


def render_doc(path: Path) -> tuple[str, str]:
    """(title, HTML body) of a Markdown file; cached per file version."""
    stat = path.stat()
    return _render(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _render(path: str, _mtime_ns: int, _size: int) -> tuple[str, str]:
    md = markdown_parser()
    text = Path(path).read_text(encoding="utf-8")
    tokens = md.parse(text)
    title = Path(path).stem
    for n, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1" and n + 1 < len(tokens):
            title = tokens[n + 1].content
            break
    for n, token in enumerate(tokens):
        if token.type == "heading_open" and n + 1 < len(tokens):
            token.attrSet("id", heading_slug(tokens[n + 1].content))
        for child in token.children or ():
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                match = _DOC_LINK.fullmatch(href)
                if match:
                    child.attrSet("href", f"/docs/{match.group(1)}{match.group(2) or ''}")
        if token.type == "table_open":
            token.attrSet("class", "doc-table")
    return title, md.renderer.render(tokens, md.options, {})


def heading_slug(text: str) -> str:
    """The anchor GitHub gives a heading: `## 7. Large databases: the 15-minute limit` → `7-large-databases-the-15-minute-limit`."""
    text = re.sub(r"[`*_]", "", text.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
