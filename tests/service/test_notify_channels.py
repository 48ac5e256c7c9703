"""Notifications delivered to real servers on loopback: aiosmtpd for mail, http.server for webhooks
and heartbeats (including their failures, retries and time bounds)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller

from backup_svc.pg.localcluster import free_port
from backup_svc.notify.common import DeliveryFailed, Event
from backup_svc.notify.delivery import Notifier, RetryPolicy
from backup_svc.notify.mail import send_mail
from backup_svc.notify.settings import NotifySettings, SmtpTarget
from backup_svc.notify.staleness import StalenessAlarm

from ..receivers import SECRET, Mailbox

HOOK_TOKEN = "T0AAAA/B0BBBB/hooksecretXYZ123"
PING_UUID = "5e1f0c2a-aaaa-bbbb-cccc-0123456789ab"
FAST = RetryPolicy(attempts=3, backoff_s=0.2, attempt_timeout_s=2, deadline_s=5)
STARTED = datetime(2026, 11, 28, 19, 30, tzinfo=timezone.utc)
FAILED = Event(
    kind="backup",
    outcome="failed",
    database="shop",
    started=STARTED,
    finished=STARTED + timedelta(seconds=3),
    error="cannot reach the database server (connection refused)",
)
GOOD = Event(
    kind="backup",
    outcome="ok",
    database="shop",
    name="shop_backup_20261128_193000.sql.gz",
    bytes=123456,
    sha256="cd" * 32,
    started=STARTED,
    finished=STARTED + timedelta(seconds=42),
)


def settings(**env: str) -> NotifySettings:
    return NotifySettings.from_env(env)


# -- email -----------------------------------------------------------------------------------------
def test_failure_mail_arrives_with_subject_and_no_secret(smtp_server, caplog):
    controller, mailbox = smtp_server
    s = settings(
        SMTP_URL=f"smtp://notifier:{SECRET}@127.0.0.1:{controller.port}",
        NOTIFY_EMAIL_TO="ops@example.com, dba@example.com",
        NOTIFY_EMAIL_FROM="backups@example.com",
    )

    deliveries = Notifier(s, policy=FAST).send(FAILED)

    assert [(d.channel, d.ok, d.attempts) for d in deliveries] == [("email", True, 1)]
    assert mailbox.logins == [(b"notifier", SECRET.encode())]  # it did log in, with the password
    sender, recipients, raw = mailbox.messages[0]
    assert (sender, recipients) == ("backups@example.com", ["ops@example.com", "dba@example.com"])
    message = mailbox.parsed()
    assert message["Subject"] == "[backup_svc] shop: backup FAILED at 2026-11-28 19:30 UTC"
    text = " ".join(message.get_content().split())  # the body is wrapped at 76 columns
    assert "nothing was stored for this run: cannot reach the database server (connection refused)." in text
    assert "What to do:" in text
    assert SECRET.encode() not in raw
    assert SECRET not in caplog.text


def test_success_mail_only_with_notify_on_always(smtp_server):
    controller, mailbox = smtp_server
    env = dict(
        SMTP_URL=f"smtp://127.0.0.1:{controller.port}",
        NOTIFY_EMAIL_TO="ops@example.com",
        NOTIFY_EMAIL_FROM="backups@example.com",
    )

    assert Notifier(settings(**env), policy=FAST).send(GOOD) == []
    assert mailbox.messages == []
    [delivery] = Notifier(settings(**env, NOTIFY_ON="always"), policy=FAST).send(GOOD)

    assert delivery.ok
    message = mailbox.parsed()
    assert message["Subject"] == "[backup_svc] shop: backup ok at 2026-11-28 19:30 UTC"
    assert f"SHA-256:   {'cd' * 32}" in message.get_content()
    assert "shop_backup_20261128_193000.sql.gz" in message.get_content()


def test_wrong_smtp_password_is_not_retried_and_not_shown(smtp_server, caplog):
    controller, mailbox = smtp_server
    wrong = "wrong-Passw0rd-123456"
    s = settings(
        SMTP_URL=f"smtp://notifier:{wrong}@127.0.0.1:{controller.port}",
        NOTIFY_EMAIL_TO="a@example.com",
        NOTIFY_EMAIL_FROM="b@example.com",
    )
    notifier = Notifier(s, policy=FAST)

    [delivery] = notifier.send(FAILED)

    assert (delivery.ok, delivery.attempts) == (False, 1)
    assert "rejected the user name or password in SMTP_URL" in delivery.error
    assert wrong not in json.dumps(notifier.status())  # the dashboard and the API show this
    assert wrong not in delivery.error and wrong not in caplog.text  # nor the caller, nor the log
    assert "gave up" in caplog.text  # the failure was logged, so the line above looked at it
    assert mailbox.messages == []


def test_starttls_is_required_off_loopback(smtp_server):
    """A STARTTLS target (what smtp:// means for any non-loopback host) pointed at a server without
    STARTTLS: nothing is sent in clear text."""
    controller, mailbox = smtp_server
    target = SmtpTarget(
        host="127.0.0.1", port=controller.port, security="starttls", username="notifier", password=SECRET
    )

    with pytest.raises(DeliveryFailed, match="does not offer STARTTLS") as caught:
        send_mail(target, "b@example.com", ["a@example.com"], FAILED, timeout_s=5)

    assert caught.value.retry is False
    assert mailbox.messages == [] and mailbox.logins == []


@pytest.fixture
def tls_files(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted by this process (SSL_CERT_FILE)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_encrypted_delivery(tls_files, security):
    mailbox = Mailbox()
    kwargs = (
        {"tls_context": tls_files, "require_starttls": True}
        if security == "starttls"
        else {
            # aiosmtpd only counts STARTTLS as TLS for its AUTH check; this connection is TLS from the first byte.
            "ssl_context": tls_files,
            "auth_require_tls": False,
        }
    )
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=mailbox.authenticate, **kwargs
    )
    controller.start()
    try:
        target = SmtpTarget(
            host="127.0.0.1", port=controller.port, security=security, username="notifier", password=SECRET
        )
        send_mail(target, "b@example.com", ["a@example.com"], FAILED, timeout_s=5)
    finally:
        controller.stop()
    assert mailbox.logins == [(b"notifier", SECRET.encode())]
    assert mailbox.parsed()["Subject"].startswith("[backup_svc] shop: backup FAILED")


# -- webhook ---------------------------------------------------------------------------------------
def test_webhook_json_and_its_retries_after_a_500(receiver, caplog):
    hook = receiver([500])
    notifier = Notifier(settings(NOTIFY_WEBHOOK_URL=f"{hook.url}/services/{HOOK_TOKEN}"), policy=FAST)

    [delivery] = notifier.send(FAILED)

    assert (delivery.ok, delivery.attempts) == (True, 2)
    assert len(hook.requests) == 2
    method, path, headers, body = hook.requests[-1]
    assert (method, path, headers["Content-Type"]) == ("POST", f"/services/{HOOK_TOKEN}", "application/json")
    assert hook.requests[0][3] == body  # the retry sends the same message
    payload = json.loads(body)
    assert {
        k: payload[k]
        for k in ("event", "outcome", "database", "name", "bytes", "sha256", "error", "started", "finished")
    } == {
        "event": "backup",
        "outcome": "failed",
        "database": "shop",
        "name": None,
        "bytes": None,
        "sha256": None,
        "error": "cannot reach the database server (connection refused)",
        "started": "2026-11-28T19:30:00Z",
        "finished": "2026-11-28T19:30:03Z",
    }
    assert payload["text"] == payload["content"]
    assert payload["text"].startswith("Backup of shop FAILED at 2026-11-28 19:30 UTC.")
    assert "answered 500" in caplog.text
    assert "hooksecret" not in caplog.text  # the URL's path is its secret


def test_webhook_gives_up_on_a_404_at_once(receiver):
    hook = receiver([404, 404, 404])
    notifier = Notifier(settings(NOTIFY_WEBHOOK_URL=f"{hook.url}/gone/{HOOK_TOKEN}"), policy=FAST)

    [delivery] = notifier.send(FAILED)

    assert (delivery.ok, delivery.attempts, len(hook.requests)) == (False, 1, 1)
    assert delivery.error == f"{hook.url}/… answered 404 Not Found"
    assert notifier.status()["last_problem"]["error"] == delivery.error


def test_unreachable_webhook_never_raises_and_is_bounded():
    """Nothing listens on the port: every attempt is refused, the caller never waits for it."""
    url = f"http://127.0.0.1:{free_port()}/hook/{HOOK_TOKEN}"
    notifier = Notifier(settings(NOTIFY_WEBHOOK_URL=url), policy=FAST)

    started = time.monotonic()
    notifier.submit(FAILED)
    assert time.monotonic() - started < 0.1  # the backup that reported goes on at once
    assert notifier.flush(timeout_s=FAST.deadline_s + 2)
    assert time.monotonic() - started < FAST.deadline_s + 1

    problem = notifier.status()["last_problem"]
    assert problem["channel"] == "webhook" and problem["attempts"] == 3
    assert problem["error"].startswith("cannot reach http://127.0.0.1:") and "refused" in problem["error"]
    assert HOOK_TOKEN not in json.dumps(notifier.status())


def test_silent_webhook_is_cut_off_by_the_deadline():
    """A receiver that accepts the connection and never answers (a listening socket nobody serves)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        policy = RetryPolicy(attempts=5, backoff_s=0.1, attempt_timeout_s=1, deadline_s=2.5)
        notifier = Notifier(settings(NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/x"), policy=policy)
        started = time.monotonic()
        [delivery] = notifier.send(FAILED)
        elapsed = time.monotonic() - started
    assert not delivery.ok and "did not answer within" in delivery.error
    assert elapsed < policy.deadline_s + policy.attempt_timeout_s


# -- heartbeat -------------------------------------------------------------------------------------
def test_heartbeat_pings_fail_then_ok_whatever_notify_on(receiver):
    monitor = receiver()
    notifier = Notifier(settings(HEARTBEAT_URL=f"{monitor.url}/ping/{PING_UUID}"), policy=FAST)

    notifier.send(FAILED)
    notifier.send(GOOD)

    assert [(m, p) for m, p, _, _ in monitor.requests] == [
        ("GET", f"/ping/{PING_UUID}/fail"),
        ("GET", f"/ping/{PING_UUID}"),
    ]


def test_drill_and_stale_events_do_not_ping(receiver):
    """The name said "stale" but only a drill was sent: both now, then a backup, whose ping alone arrives
    (so an empty list is not just a monitor nothing could reach)."""
    monitor = receiver()
    notifier = Notifier(settings(HEARTBEAT_URL=f"{monitor.url}/ping/{PING_UUID}"), policy=FAST)
    notifier.send(Event(kind="drill", outcome="failed", database="shop", error="x"))
    notifier.send(Event(kind="stale", outcome="failed", database="shop", error="the newest backup is 2 days old"))
    assert monitor.requests == []
    notifier.send(GOOD)
    assert [(m, p) for m, p, _, _ in monitor.requests] == [("GET", f"/ping/{PING_UUID}")]


# -- staleness -------------------------------------------------------------------------------------
def test_staleness_alarm_goes_out_once(receiver):
    """A seeded backup two days old, a daily schedule, checked every minute for an hour: one webhook."""
    hook = receiver()
    notifier = Notifier(settings(NOTIFY_WEBHOOK_URL=f"{hook.url}/stale"), policy=FAST)
    newest = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
    now = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    watch = StalenessAlarm("shop", up_since=now - timedelta(days=10))

    for minute in range(60):
        state, event = watch.check(newest, now + timedelta(minutes=minute), timedelta(days=1))
        assert state.stale
        if event:
            notifier.submit(event)
    assert notifier.flush(timeout_s=10)

    assert len(hook.requests) == 1
    payload = json.loads(hook.requests[0][3])
    assert (payload["event"], payload["outcome"]) == ("stale", "failed")
    assert payload["details"]["newest"] == "2026-11-26T03:00:00Z"
    assert payload["text"].startswith(
        "Backups of shop are stale: no successful stored backup since 2026-11-26 03:00 UTC"
    )
