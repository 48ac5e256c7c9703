"""The snippets in docs/main-app-integration.md, run as written, mint links the real service accepts."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import urlsplit

import pytest

from tests import REPO
from tests.http_client import gzip_is_valid
from tests.service_process import LINK_SECRET as SECRET
from tests.service_process import wait_idle

DOC = REPO / "docs" / "main-app-integration.md"


def snippet(language: str) -> str:
    """The one fenced code block of `language` in the integration guide."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    assert len(blocks) == 1, f"expected one {language} block in {DOC.name}, found {len(blocks)}"
    return blocks[0]


def _download(service, url: str):
    assert url.startswith(service.base_url + "/api/v1/backup?expires=")
    parts = urlsplit(url)
    wait_idle(service)
    return service.request("GET", f"{parts.path}?{parts.query}")


def test_python_snippet_mints_an_accepted_link(link_service):  # noqa: F811
    code = snippet("python")
    assert len(code.strip().splitlines()) <= 12  # "about ten lines"
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)

    url = namespace["backup_link"](link_service.base_url + "/", SECRET, ttl=60)
    reply = _download(link_service, url)

    assert reply.status == 200 and reply.complete
    assert gzip_is_valid(reply.body)


def test_python_snippet_link_expires(link_service):  # noqa: F811
    namespace: dict = {}
    exec(compile(snippet("python"), str(DOC), "exec"), namespace)
    url = namespace["backup_link"](link_service.base_url, SECRET, ttl=-1)
    reply = _download(link_service, url)
    assert reply.status == 403 and "expired" in reply.json()["message"]


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js (dev.sh installs Debian's nodejs for the tests when it is missing)."""
    found = subprocess.run(["node", "--version"], capture_output=True, text=True)
    assert found.returncode == 0, "node is missing: run ./dev.sh test, which installs it"
    return "node"


def test_node_snippet_mints_an_accepted_link(link_service, node):  # noqa: F811
    program = snippet("javascript") + "\nconsole.log(backupLink(process.argv[1], process.argv[2], 60));\n"
    made = subprocess.run(
        [node, "-e", program, link_service.base_url, SECRET], capture_output=True, text=True, timeout=30
    )
    assert made.returncode == 0, made.stderr

    reply = _download(link_service, made.stdout.strip())

    assert reply.status == 200 and reply.complete
    assert gzip_is_valid(reply.body)
