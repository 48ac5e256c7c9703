"""Real receivers on loopback for notification tests: an SMTP server (aiosmtpd) and an HTTP server."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from backup_svc.pg.localcluster import free_port

# The password the SMTP server accepts (tests check it never shows up anywhere else).
SECRET = "smtp-Secret-9f8e7d6c"
# Paths shaped like a healthchecks.io ping URL and a Slack webhook's: tests check they never show up in logs.
PING = "/ping/5e1f0c2a-aaaa-bbbb-cccc-0123456789ab"
HOOK = "/services/T0AAAA/B0BBBB/hooksecretXYZ123"


def every_alert(hook, monitor, drill_url: str) -> dict[str, str]:
    """The variables that send every outcome to the webhook `hook`, ping the heartbeat `monitor` and drill
    each new backup into a scratch database on `drill_url`'s server."""
    return {
        "NOTIFY_WEBHOOK_URL": hook.url + HOOK,
        "NOTIFY_ON": "always",
        "HEARTBEAT_URL": monitor.url + PING,
        "RESTORE_DRILL_URL": drill_url,
    }


class Mailbox:
    """aiosmtpd handler that keeps every message and the logins it saw."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == SECRET.encode(), handled=False)

    def parsed(self, i: int = -1) -> email.message.EmailMessage:
        return email.message_from_bytes(self.messages[i][2], policy=email.policy.default)


@contextlib.contextmanager
def smtp_server():
    """A real SMTP server on 127.0.0.1 that accepts AUTH without TLS (the loopback case)."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=mailbox.authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


class Receiver(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 recording every request; answers with `statuses` in turn (then 200)."""

    daemon_threads = True

    def __init__(self, statuses: list[int] | None = None):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.statuses = list(statuses or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


@contextlib.contextmanager
def receivers():
    """A factory of Receivers, all closed at the end."""
    servers = []

    def make(statuses=None) -> Receiver:
        servers.append(Receiver(statuses))
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.close()
