"""Running the app under gunicorn with the package's own configuration."""
from __future__ import annotations

import logging
import socket

from gunicorn.app.base import BaseApplication

from backup_svc.config import Settings


def _bind_address(port: int) -> str:
    """`[::]:PORT` (IPv6 and, through the dual-stack socket, IPv4); `0.0.0.0:PORT` where IPv6 is off."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
        return f"[::]:{port}"
    except OSError:
        return f"0.0.0.0:{port}"


def gunicorn_options(settings: Settings) -> dict:
    """The gunicorn settings this service needs, each with the reason for its value."""
    return {
        # Railway routes to $PORT on both address families (its private network is IPv6).
        "bind": [_bind_address(settings.port)],
        # One process: the concurrency limit and the progress of running dumps live in its memory.
        "workers": 1,
        # Threads let that process stream dumps while it answers health checks and the dashboard.
        # gthread's heartbeat runs outside the request threads, so a multi-minute stream is never
        # taken for a hung worker and killed by `timeout`.
        "worker_class": "gthread",
        "threads": settings.threads,
        # Only for a worker whose main loop hangs; streams are not subject to it (see above).
        "timeout": 60,
        # On SIGTERM a running dump gets this long to finish; after it the worker is killed and the
        # transfer is cut without its final chunk and gzip trailer, so it never looks complete.
        "graceful_timeout": settings.graceful_timeout_s,
        "keepalive": 5,
        # Access log on stdout, our own and gunicorn's messages on stderr.
        "accesslog": "-",
        "errorlog": "-",
        # Path only (a query string may carry a signed link), no username (it is logged even when the
        # login fails, and people type passwords there), formatted without gunicorn's per-request
        # dict of every header.
        "logger_class": "backup_svc.web.accesslog.AccessLogger",
        "proc_name": "backup_svc",
        # Several instances may run on one machine (tests, demo); none needs the control socket.
        "control_socket_disable": True,
        # gunicorn trusts X-Forwarded-Proto & co. from loopback by default; the app alone decides,
        # per TRUSTED_PROXY_HOPS (proxy.py), so a client cannot claim https or another address.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        # Request limits well above anything legitimate, well below anything harmful.
        "limit_request_line": 8190,
        "limit_request_field_size": 16384,
    }


class BackupServer(BaseApplication):
    """gunicorn serving `create_app(settings)` with `gunicorn_options(settings)`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        from backup_svc.web import create_app

        configure_logging()
        return create_app(self.settings)


def configure_logging() -> None:
    """The package's log lines go to stderr, one per line, beside gunicorn's."""
    logger = logging.getLogger("backup_svc")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
