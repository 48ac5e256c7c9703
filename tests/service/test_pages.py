"""Pages for people: the docs rendered as HTML, and the 401 page a browser shows (real gunicorn)."""

from __future__ import annotations

import re

from tests.http_client import basic

BROWSER_ACCEPT = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_dashboard_links_to_the_api_docs_rendered_as_html(rich_service):
    page = rich_service.request("GET", "/", basic("admin", rich_service.password))
    assert page.status == 200 and 'href="/docs/api"' in page.body.decode()
    doc = rich_service.request("GET", "/docs/api", {**basic("admin", rich_service.password), **BROWSER_ACCEPT})
    assert doc.status == 200 and doc.headers["Content-Type"].startswith("text/html")
    html = doc.body.decode()
    assert "<title>HTTP API · backup_svc</title>" in html
    assert '<link rel="stylesheet" href="/static/style.css">' in html  # the dashboard's layout
    assert '<h1 id="http-api">HTTP API</h1>' in html and "## " not in html  # rendered, not Markdown text
    assert re.search(r'<table class="doc-table">\s*<thead>\s*<tr>\s*<th>status</th>', html)
    assert "<code>GET /api/v1/backups/&lt;id&gt;</code>" in html  # markup in the docs is escaped
    # links between docs lead to their pages, anchors to the headings' ids
    assert 'href="/docs/security"' in html
    assert 'href="/docs/deploy-railway#' in html
    restore = rich_service.request("GET", "/docs/restore", rich_service.auth()).body.decode()
    assert '<h2 id="before-you-restore-what-it-overwrites">' in restore


def test_docs_need_credentials_and_stay_inside_docs(rich_service):
    assert rich_service.request("GET", "/docs/api").status == 401
    assert rich_service.request("GET", "/docs/..%2FREADME", rich_service.auth()).status == 404
    assert rich_service.request("GET", "/docs/no-such-doc", rich_service.auth()).status == 404


def test_401_page_for_browsers_explains_the_login_without_the_token(rich_service):
    reply = rich_service.request("GET", "/", {**basic("admin", "wrong-password-0123456"), **BROWSER_ACCEPT})
    assert reply.status == 401 and reply.headers["WWW-Authenticate"] == 'Basic realm="backup_svc"'
    assert reply.headers["Content-Type"].startswith("text/html")
    html = reply.body.decode()
    assert '<link rel="stylesheet" href="/static/style.css">' in html
    assert "ADMIN_USERNAME" in html and "ADMIN_PASSWORD" in html and "login prompt" in html
    assert "Bearer" not in html and "`" not in html and "ADMIN_TOKEN" not in html


def test_401_for_scripts_is_json_with_the_token_hint(rich_service):
    for path in ("/", "/api/v1/database"):
        reply = rich_service.request("GET", path, {"Accept": "application/json"})
        assert reply.status == 401 and reply.headers["Content-Type"] == "application/json"
        assert reply.json() == {
            "error": "Unauthorized",
            "message": "Authentication required: send `Authorization: Bearer <ADMIN_TOKEN>` "
            "or log in with ADMIN_USERNAME / ADMIN_PASSWORD.",
        }
    # a browser's navigation to an API path still gets JSON: scripts read those
    assert rich_service.request("GET", "/api/v1/database", BROWSER_ACCEPT).json()["error"] == "Unauthorized"
