"""Email through SMTP (smtplib): STARTTLS on 587, implicit TLS on 465, plain only to loopback."""

from __future__ import annotations

import socket
import textwrap
from typing import TYPE_CHECKING

from backup_svc.notify.common import Event, DeliveryFailed, human_size, utc_text
from backup_svc.notify.settings import SmtpTarget
from backup_svc.pg.scrub import scrub

if TYPE_CHECKING:
    from email.message import EmailMessage

# smtplib, ssl and email are imported when a message is built or sent, not with this module (webhook.py says why).


def subject(event: Event) -> str:
    """`[backup_svc] shop: backup FAILED at 2026-11-28 19:30 UTC` — database, outcome and time."""
    what = {
        "backup": "backup",
        "drill": "restore drill",
        "stale": "backups are STALE",
        "test": "test notification",
        "shrink": "backup SHRANK (warning)",
        "restore": event.details.get("action", "restore"),
    }[event.kind]
    if event.kind in ("stale", "test", "shrink"):
        return f"[backup_svc] {event.database}: {what} at {utc_text(event.when)}"
    how = "FAILED" if event.failed else "ok"
    return f"[backup_svc] {event.database}: {what} {how} at {utc_text(event.when)}"


def body(event: Event) -> str:
    """Plain-text body: the reason in plain words, the object, its size and sha256, and what to do."""
    lines = [*_wrap(event.headline() + "."), "", *_wrap(event.reason()), ""]
    facts = [("Database", event.database), ("Object", event.name)]
    if event.bytes is not None:
        facts.append(("Size", f"{human_size(event.bytes)} ({event.bytes} bytes)"))
    if event.sha256 and not event.failed:
        facts.append(("SHA-256", event.sha256))
    # (the error is in the reason above, in its sentence)
    if event.started:
        facts.append(("Started", utc_text(event.started, seconds=True)))
    if event.finished:
        facts.append(("Finished", utc_text(event.finished, seconds=True)))
    for key in ("seconds", "tables", "rows"):
        if key in event.details:
            value = event.details[key]
            facts.append((key.capitalize(), f"{value:.1f}" if isinstance(value, float) else str(value)))
    facts += event.extra_facts()
    lines += [f"{label + ':':<10} {value}" for label, value in facts if value is not None]
    lines += ["", *_wrap("What to do: " + event.advice()), "", "-- backup_svc"]
    return "\n".join(lines) + "\n"


def _wrap(paragraph: str) -> list[str]:
    # Lines under 78 characters keep a plain ASCII body in 7bit, readable as received.
    return textwrap.wrap(paragraph, width=76, break_long_words=False, break_on_hyphens=False) or [""]


def build_message(event: Event, sender: str, recipients: list[str]) -> EmailMessage:
    """The whole message, ready for `send_message`."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["Subject"] = subject(event)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to a robot
    message.set_content(body(event))
    return message


def send_mail(target: SmtpTarget, sender: str, recipients: list[str], event: Event, *, timeout_s: float) -> None:
    """Deliver one message; DeliveryFailed (secret-free) when the server cannot be reached or refuses."""
    import smtplib
    import ssl

    message = build_message(event, sender, recipients)
    context = ssl.create_default_context()
    try:
        if target.security == "tls":
            client = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout_s, context=context)
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=timeout_s)
        with client:
            client.ehlo()
            if target.security == "starttls":
                if not client.has_extn("starttls"):
                    # Never fall back to sending the password and the mail in clear text.
                    raise DeliveryFailed(
                        f"{target.describe()} does not offer STARTTLS; use smtps:// or a server that does", retry=False
                    )
                client.starttls(context=context)
                client.ehlo()
            if target.username:
                client.login(target.username, target.password or "")
            refused = client.send_message(message)
    except DeliveryFailed:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryFailed(
            f"{target.describe()} rejected the user name or password in SMTP_URL ({exc.smtp_code})", retry=False
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryFailed(
            f"{target.describe()} offers no login (AUTH) here; check the port and whether "
            f"SMTP_URL should carry a user name",
            retry=False,
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryFailed(
            f"{target.describe()} refused every recipient: {', '.join(exc.recipients)}", retry=False
        ) from None
    except smtplib.SMTPResponseException as exc:
        detail = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryFailed(
            f"{target.describe()} answered {exc.smtp_code}: {scrub(detail, target.password)[:200]}",
            retry=exc.smtp_code < 500,
        ) from None
    except ssl.SSLError as exc:
        raise DeliveryFailed(f"TLS with {target.describe()} failed: {exc.reason or exc}") from None
    except (socket.timeout, TimeoutError):
        raise DeliveryFailed(f"{target.describe()} did not answer within {timeout_s:.0f} s") from None
    except (OSError, smtplib.SMTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DeliveryFailed(f"cannot reach {target.describe()}: {scrub(reason, target.password)}") from None
    if refused:
        raise DeliveryFailed(f"{target.describe()} refused {', '.join(refused)}", retry=False)
