"""The request's client connection, seen from the app while nothing is being written to it.

gunicorn hands the client's socket to the app as `gunicorn.socket`. A download that waits for
pg_dump's first byte (connecting, waiting for locks) writes nothing, so only a look at that socket
tells whether the client is still there; and a cancel must be able to cut a connection whose
client stopped reading, or the thread blocked writing to it would hold its slot.
"""

from __future__ import annotations

import socket
from typing import Callable


def client_gone_probe(environ: dict) -> Callable[[], bool]:
    """A check whether the request's client has closed its connection, for while nothing is written to it.

    gunicorn hands the client's socket to the app as `gunicorn.socket`; a peek that finds end-of-file
    (or a reset) means the client went away. Data waiting there (a pipelined request) means it is
    still there. Without that socket (another server, the test client), never gone.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return lambda: False

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or closed by the server already
            return True

    return gone


def disconnector(environ: dict) -> Callable[[], None]:
    """Cut the request's client connection (both directions): a write blocked on it fails at once."""
    sock = environ.get("gunicorn.socket")

    def cut() -> None:
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    return cut
