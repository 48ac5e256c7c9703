"""Fixtures the browser tests share."""

from __future__ import annotations

import http.server
import threading

import pytest

from backup_svc.pg.localcluster import free_port
from tests.s3support import cluster_identity, owned, s3_env
from tests.service_process import Service

LINK_SECRET = "browser-link-secret-" + "w" * 16


def serve_pages(pages: dict[str, bytes]) -> http.server.ThreadingHTTPServer:
    """An HTTP server on a free loopback port, in a thread, answering GET <path> (query ignored) with
    `pages[path]` as HTML, 404 otherwise. `pages` may be filled after it starts."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            body = pages.get(path, b"not found")
            self.send_response(200 if path in pages else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def other_site():
    """Serve one HTML page on http://localhost:<port>/: another site than the service's 127.0.0.1."""
    servers = []

    def serve(html: str) -> str:
        server = serve_pages({"/": html.encode()})
        servers.append(server)
        return f"http://localhost:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def linked_service(rich_db, pg_cluster, tmp_path_factory):
    """The rich database's service with signed links on (LINK_SECRET), one per test module."""
    service = Service(
        {"DATABASE_URL": rich_db, "LINK_SECRET": LINK_SECRET}, tmp_path_factory.mktemp("linked") / "service.log"
    ).start()
    yield service
    service.stop()


@pytest.fixture
def storage(s3, moto_s3):
    """(client, bucket, env): a fresh bucket and the settings that point the service at it."""
    client, bucket = s3
    return client, bucket, {"BACKUP_STORAGE_URL": f"s3://{bucket}/rich/", **s3_env(moto_s3.endpoint)}


@pytest.fixture
def ours(pg_cluster) -> dict[str, str]:
    """The ownership record of the rich database's service: only such objects are its backups."""
    return owned(cluster_identity(pg_cluster), "rich")
