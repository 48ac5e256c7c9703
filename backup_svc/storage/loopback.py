"""A throwaway S3-protocol server on loopback: moto's server mode, in memory, gone when the process exits.

The demo (`./dev.sh run` without DATABASE_URL) keeps its stored backups here, and the tests talk to the
same server. moto is not a runtime dependency of the service: requirements-demo.txt installs it for
the demo, requirements-dev.txt for the tests; the Docker image has neither.
"""

from __future__ import annotations

import logging
import secrets

DEMO_BUCKET = "demo-backups"
# Every few minutes, so a newcomer sees stored backups appear; six kept: the last half hour.
DEMO_SCHEDULE = "*/5 * * * *"
DEMO_RETENTION = "last=6"


class LoopbackS3:
    """moto's S3 server (ThreadedMotoServer) on 127.0.0.1 and a port the system picks."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per S3 request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LoopbackS3":
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        self._server.stop()


def moto_available() -> bool:
    """Whether moto's server mode is installed (requirements-demo.txt)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


def start_demo_storage(env: dict[str, str], database: str) -> LoopbackS3:
    """Start the server, make the demo's bucket, and point `env` at it (storage URL, AWS_*, schedule,
    retention), keeping any of those the user set."""
    from .client import make_client

    server = LoopbackS3().start()
    settings = {
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "demo",
        # moto accepts any key; a random one keeps the demo's variables looking like real ones
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_S3_URL_STYLE": "path",
    }
    env.update(settings)
    env["BACKUP_STORAGE_URL"] = f"s3://{DEMO_BUCKET}/{database}/"
    env.setdefault("BACKUP_SCHEDULE", DEMO_SCHEDULE)
    env.setdefault("BACKUP_RETENTION", DEMO_RETENTION)
    # The schedule's backup every few minutes must not turn a newcomer's download away with a 429.
    env.setdefault("BACKUP_MAX_CONCURRENT", "2")
    make_client(settings).create_bucket(Bucket=DEMO_BUCKET)
    return server
