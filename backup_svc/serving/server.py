"""Running the app under gunicorn with the package's own configuration."""
from __future__ import annotations

import logging
import socket

from gunicorn.app.base import BaseApplication

from backup_svc.config import Settings
from backup_svc.serving.worker import WORKER_CONNECTIONS


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def listen_addresses(host: str, port: int) -> list[tuple[str, int]]:
    """The (address, port) pairs to listen on for BIND_HOST `host`.

    `::` is one dual-stack socket (IPv6 and IPv4), `0.0.0.0` where IPv6 is off; `localhost` is the
    loopback addresses of both families, so a browser reaches it whichever one it tries first.
    """
    if host == "::":
        return [("::" if _has_ipv6() else "0.0.0.0", port)]
    if host == "localhost":
        return [("127.0.0.1", port)] + ([("::1", port)] if _has_ipv6() else [])
    return [(host, port)]


def _bind_string(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def port_in_use(host: str, port: int) -> str | None:
    """The first of the addresses to listen on that something else holds, or None when all are free.

    Checked before anything is started or printed: gunicorn would otherwise retry for five seconds
    and exit after the demo had printed credentials that belong to whatever holds the port.
    """
    for address, _ in listen_addresses(host, port):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            try:
                probe.bind((address, port))
            except OSError:
                return _bind_string(address, port)
    return None


def gunicorn_options(settings: Settings) -> dict:
    """The gunicorn settings this service needs, each with the reason for its value."""
    return {
        # Railway routes to $PORT on both address families (its private network is IPv6).
        "bind": [_bind_string(address, port) for address, port in listen_addresses(settings.bind_host,
                                                                                    settings.port)],
        # One process: the concurrency limit and the progress of running dumps live in its memory.
        "workers": 1,
        # Threads let that process stream dumps while it answers health checks and the dashboard.
        # gthread's heartbeat runs outside the request threads, so a multi-minute stream is never
        # taken for a hung worker and killed by `timeout`. Its subclass reads each request in the
        # event loop under a deadline, so slow clients cannot hold the threads (worker.py).
        "worker_class": "backup_svc.serving.worker.GuardedWorker",
        "threads": settings.threads,
        "worker_connections": WORKER_CONNECTIONS,
        # Only for a worker whose main loop hangs; streams are not subject to it (see above).
        "timeout": 60,
        # On SIGTERM a running dump gets this long to finish; after it the worker is killed and the
        # transfer is cut without its final chunk and gzip trailer, so it never looks complete.
        # GRACEFUL_TIMEOUT, ended 15 s before Railway's SIGKILL when its draining time is known.
        "graceful_timeout": settings.grace_s,
        "keepalive": 5,
        # Access log on stdout, our own and gunicorn's messages on stderr.
        "accesslog": "-",
        "errorlog": "-",
        # Path only (a query string may carry a signed link), no username (it is logged even when the
        # login fails, and people type passwords there), formatted without gunicorn's per-request
        # dict of every header.
        "logger_class": "backup_svc.serving.accesslog.AccessLogger",
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
        self.stored = None  # the worker's StoredBackups (BACKUP_SCHEDULE), set in the worker by load()
        self.restores = None  # the worker's RestoreJobs, set by load()
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        log_draining(self.settings)
        # In the worker, once it has stopped serving: cancel a running stored backup (its upload is aborted)
        # and a restore before its swap (a swap under way finishes or is undone first).
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self):
        from backup_svc.web import create_app
        from backup_svc.web.state import EXTENSION

        configure_logging()
        app = create_app(self.settings)
        # Started here, in the one worker, not in create_app: building an app starts no thread.
        app.extensions[EXTENSION].readiness.start()  # the first /readyz then finds an answer waiting
        self.stored = app.extensions[EXTENSION].stored
        self.restores = app.extensions[EXTENSION].restores
        if self.stored is not None:
            self.stored.start()
        return app

    def begin_shutdown(self) -> None:
        """In the worker, from its SIGTERM handler: a running stored backup starts stopping at once (not
        after the downloads have drained), so that it ends, and is reported, within the grace period."""
        if self.stored is not None:
            self.stored.begin_shutdown(self.settings.grace_s)

    def _worker_exit(self, arbiter, worker) -> None:
        if self.stored is not None:
            self.stored.stop()
        if self.restores is not None:
            self.restores.stop()


def log_draining(settings: Settings) -> None:
    """At start-up: the draining time and the grace in force, and a warning when redeploys would cut downloads."""
    draining = settings.draining
    configure_logging()
    logger = logging.getLogger("backup_svc.server")
    if draining.seconds is not None or draining.on_railway:
        logger.info("draining: %s", draining.describe(settings.graceful_timeout_s))
    for warning in draining.warnings(settings.graceful_timeout_s):
        logger.warning("draining: %s", warning)


def configure_logging() -> None:
    """The package's log lines go to stderr, one per line, beside gunicorn's."""
    logger = logging.getLogger("backup_svc")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
