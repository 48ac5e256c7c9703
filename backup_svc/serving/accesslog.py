"""gunicorn's logger with a cheaper access line.

gunicorn formats `access_log_format` from a dict of every request and response header, built for
each request; that was a quarter of the cost of answering `/healthz` (bench/README.md). This writes
the same fields as ACCESS_LOG_FORMAT directly: peer, time, method, path (never the query string:
it may carry a signed link), protocol, status, bytes, milliseconds, user agent. No username. The
peer is what the app made of it (a trusted proxy's X-Forwarded-For entry), written as the audit
writes it: an address or `invalid` (clientaddress.py).
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from backup_svc.clientaddress import client_label


class AccessLogger(Logger):
    """Writes `peer - - [time] "METHOD /path HTTP/x.y" status bytes Nms "user agent"`."""

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        status = str(resp.status).split(" ", 1)[0]
        sent = getattr(resp, "sent", None)
        agent = environ.get("HTTP_USER_AGENT", "-").replace('"', "'")
        self.access_log.info(
            '%s - - %s "%s %s HTTP/%s.%s" %s %s %dms "%s"',
            client_label(environ.get("REMOTE_ADDR")) or "-",
            self.now(),
            req.method,
            req.path,
            req.version[0],
            req.version[1],
            status,
            sent if sent else "-",
            request_time.total_seconds() * 1000,
            agent,
        )
