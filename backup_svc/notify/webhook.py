"""Webhook: one JSON POST per event, shaped so Slack (`text`) and Discord (`content`) take it as is."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from backup_svc.notify.common import DeliveryFailed, Event, safe_url

if TYPE_CHECKING:
    import urllib.request

# urllib.request (with http.client, ssl and email: ~0.03 s) is imported when a message is sent, not with this
# module: `upload` loads it before pg_dump starts, and its notifications go out only at the end.

USER_AGENT = "backup_svc-notify/1"


def post_json(url: str, payload: dict, *, timeout_s: float) -> int:
    """POST `payload` as JSON; return the 2xx status, or DeliveryFailed saying what went wrong."""
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    return http_send(request, timeout_s)


def send_webhook(url: str, event: Event, *, timeout_s: float) -> None:
    """Deliver `event` to NOTIFY_WEBHOOK_URL."""
    post_json(url, event.payload(), timeout_s=timeout_s)


def http_send(request: urllib.request.Request, timeout_s: float) -> int:
    """Send `request`; return the 2xx status, or DeliveryFailed (the URL shown without its secret path)."""
    import urllib.error
    import urllib.request

    where = safe_url(request.full_url)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
            return response.status
    except urllib.error.HTTPError as exc:
        # 429 and 5xx are the receiver's passing trouble; any other 4xx will not change on retry.
        retry = exc.code == 429 or exc.code >= 500
        raise DeliveryFailed(f"{where} answered {exc.code} {exc.reason}", retry=retry) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DeliveryFailed(f"{where} did not answer within {timeout_s:.0f} s") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise DeliveryFailed(f"cannot reach {where}: {text}") from None
    except (socket.timeout, TimeoutError):
        raise DeliveryFailed(f"{where} did not answer within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise DeliveryFailed(f"cannot reach {where}: {exc.strerror or type(exc).__name__}") from None
