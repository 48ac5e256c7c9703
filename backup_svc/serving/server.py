"""Running the app under gunicorn with the package's own configuration."""

from __future__ import annotations

import logging
import socket
from typing import Any, Callable

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


class PortInUse(OSError):
    """Something else listens on one of the addresses; `address` is it, as `[::1]:8080` or `127.0.0.1:8080`."""

    def __init__(self, address: str):
        super().__init__(f"cannot listen on {address}: the port is in use")
        self.address = address


def bind_listeners(host: str, port: int) -> list[int]:
    """Bind and listen on every address for BIND_HOST `host` now; the sockets' descriptors, for gunicorn.

    Bound before anything is started or printed, and held from then on: a banner can only ever name a
    port this process listens on (gunicorn takes the descriptors over through `fd://N`). Raises
    PortInUse, having closed what it had bound, when any address is taken.
    """
    bound: list[socket.socket] = []
    try:
        for address, _ in listen_addresses(host, port):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            bound.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            if family == socket.AF_INET6:  # `::` serves IPv4 too; `::1` sits beside 127.0.0.1
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if address == "::" else 1)
            try:
                listener.bind((address, port))
            except OSError:
                raise PortInUse(_bind_string(address, port)) from None
            listener.listen(2048)  # gunicorn's default backlog; it listens again with its own setting
            listener.set_inheritable(True)  # the worker gunicorn forks serves on it
    except BaseException:
        for listener in bound:
            listener.close()
        raise
    return [listener.detach() for listener in bound]  # gunicorn owns and closes them from here on


def port_in_use(host: str, port: int) -> str | None:
    """The first of the addresses to listen on that something else holds, or None when all are free."""
    try:
        fds = bind_listeners(host, port)
    except PortInUse as exc:
        return exc.address
    for fd in fds:
        socket.socket(fileno=fd).close()
    return None


def gunicorn_options(settings: Settings, listeners: list[int] | None = None) -> dict:
    """The gunicorn settings this service needs, each with the reason for its value.

    `listeners`: descriptors from bind_listeners(), already bound; else gunicorn binds the addresses.
    """
    return {
        # Railway routes to $PORT on both address families (its private network is IPv6).
        "bind": (
            [f"fd://{fd}" for fd in listeners]
            if listeners
            else [_bind_string(address, port) for address, port in listen_addresses(settings.bind_host, settings.port)]
        ),
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
    """gunicorn serving the app `load_app(settings)` makes, in the worker, with `gunicorn_options(settings)`.

    `load_app` returns the WSGI app and its service state (readiness, stored, restores): the caller (cli.py)
    passes the web app's, so this room serves it without importing it."""

    def __init__(
        self, settings: Settings, listeners: list[int] | None, load_app: Callable[[Settings], tuple[Any, Any]]
    ):
        self.settings = settings
        self.load_app = load_app
        self.listeners = listeners  # bound by bind_listeners(), handed to gunicorn
        self.stored = None  # the worker's StoredBackups (BACKUP_SCHEDULE), set in the worker by load()
        self.restores = None  # the worker's RestoreJobs, set by load()
        self.markers = None  # the master's run directory for stored backups' run markers (unfinished.py)
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings, self.listeners).items():
            self.cfg.set(key, value)
        log_draining(self.settings)
        # In the worker, once it has stopped serving: cancel a running stored backup (its upload is aborted)
        # and a restore before its swap (a swap under way finishes or is undone first).
        self.cfg.set("worker_exit", self._worker_exit)
        # In the master: each stored backup run leaves a marker here while it runs; a worker killed outright
        # (out of memory) leaves it behind, and the next worker reports that run (unfinished.py).
        if self.settings.storage is not None and self.markers is None:  # (load_config runs again on SIGHUP)
            from backup_svc.serving.unfinished import RunMarkers

            self.markers = RunMarkers()
            self.cfg.set("on_exit", lambda arbiter: self.markers.remove())

    def load(self):
        configure_logging()
        app, service = self.load_app(self.settings)
        # Started here, in the one worker, not in create_app: building an app starts no thread.
        service.readiness.start()  # the first /readyz then finds an answer waiting
        self.stored = service.stored
        self.restores = service.restores
        if self.stored is not None:
            self.stored.markers = self.markers
            self.stored.start()
            if self.markers is not None:
                from backup_svc.serving.unfinished import report_unfinished

                report_unfinished(self.markers, self.stored)
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
