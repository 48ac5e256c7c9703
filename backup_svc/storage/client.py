"""The S3 client, from the standard AWS_* variables, with bounded timeouts and our own retries.

botocore (boto3's core, pinned with it) is used because it is the one client that exposes every multipart call
this service needs (create/upload part/complete/abort, and *listing* incomplete uploads to clean them up: buckets
without lifecycle rules, like Railway's, keep them forever otherwise). requirements.txt says more.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

URL_STYLES = ("path", "virtual")
# Seconds to open a connection (TCP and TLS): a reachable storage answers in well under a second; 10 s
# leaves room for three lost SYNs (Linux resends after 1, 3 and 7 s) and an unreachable one fails fast.
CONNECT_TIMEOUT_S = 10
# While a part is sent, the longest the link may take no byte (a 16 KiB write; partbody.py). At 100 KB/s
# a write is taken within 0.2 s; 30 s rides out a provider's brief stall (a load balancer failing over,
# a congested uplink) that 10 s did not, and a link that is really dead still fails each attempt in 30 s.
SEND_STALL_S = 30
# After the last byte sent (or while receiving), the longest wait for the storage's answer: completing a
# large multipart upload or copying an object onto itself can take tens of seconds on some providers.
READ_TIMEOUT_S = 60
# S3 refuses a request whose signature time is further than this from its own clock.
CLOCK_SKEW_LIMIT_S = 15 * 60
# S3 error codes worth another try besides HTTP 5xx and 429 (some providers send these with a 400).
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
}


class StorageError(Exception):
    """Object storage refused or failed; the message is one line and holds no secret."""


class StorageConfigError(ValueError):
    """An AWS_* variable has a value the client cannot use; the message names it."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient storage error is retried (per request, e.g. per part).

    Defaults: 5 attempts, waits of about 0.5, 1, 2, 4 s between them (jittered), so a storage
    hiccup of up to ~8 s is ridden out and a dead storage fails within ~8 s plus timeouts.
    """

    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential, half jittered."""
        full = min(self.max_delay_s, self.first_delay_s * (2 ** (attempt - 1)))
        return full / 2 + random.uniform(0, full / 2)


def error_code(exc: BaseException) -> tuple[str, int | None]:
    """The S3 error code and HTTP status of a botocore ClientError (("", None) for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    return (str(response.get("Error", {}).get("Code", "")), response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def is_transient(exc: BaseException) -> bool:
    """True for errors another attempt may cure: dropped connections, timeouts, 5xx, 429, SlowDown."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.SSLError):
        return False  # a certificate problem does not go away by asking again
    if isinstance(exc, (bex.ConnectionError, bex.HTTPClientError, bex.IncompleteReadError)):
        return True
    if isinstance(exc, bex.ClientError):
        code, status = error_code(exc)
        return code in _TRANSIENT_CODES or (status is not None and (status >= 500 or status == 429))
    return False


def describe(exc: BaseException) -> str:
    """One line about a storage error, without credentials (botocore's messages carry none)."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.NoCredentialsError):
        return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, bex.ClientError):
        code, status = error_code(exc)
        message = exc.response.get("Error", {}).get("Message") or ""
        text = f"{code or 'error'} (HTTP {status}){': ' + message if message else ''}"
        return text + (_refusal_hint(exc.response) if status == 403 else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _refusal_hint(response: dict) -> str:
    """Why a 403 came: a clock far from the storage's (S3 refuses signatures over 15 minutes off), or
    else the credentials. A HEAD's 403 has no body to say which; the answer's Date header can."""
    from email.utils import parsedate_to_datetime

    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        skew = (parsedate_to_datetime(date).timestamp() - time.time()) if date else None
    except (TypeError, ValueError):
        skew = None
    if skew is None:
        return ""
    if abs(skew) > CLOCK_SKEW_LIMIT_S:
        side = "behind" if skew > 0 else "ahead of"
        return (
            f" — this machine's clock is {abs(skew) / 60:.0f} min {side} the storage's, and S3 refuses "
            f"requests signed more than 15 min off: fix the clock (NTP)"
        )
    return " — the clocks agree, so the credentials (or their permissions on this bucket) are wrong"


def with_retries(
    what: str, call: Callable[[], T], policy: RetryPolicy, cancelled: Callable[[], bool] = lambda: False
) -> T:
    """`call()`, retried with backoff on transient errors; StorageError naming `what` when it gives up.

    `cancelled` is checked before each new attempt: an aborted upload stops retrying its parts.
    """
    from botocore import exceptions as bex

    attempt = 1
    while True:
        try:
            return call()
        except (bex.BotoCoreError, bex.ClientError) as exc:
            if not is_transient(exc):
                raise StorageError(f"{what} failed: {describe(exc)}") from exc
            if attempt >= policy.attempts or cancelled():
                raise StorageError(f"{what} failed after {attempt} attempts: {describe(exc)}") from exc
            delay = policy.delay(attempt)
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)",
                what,
                describe(exc),
                delay,
                attempt + 1,
                policy.attempts,
            )
            time.sleep(delay)
            attempt += 1


def object_exists(client, bucket: str, key: str, what: str, policy: RetryPolicy) -> bool:
    """Whether `s3://bucket/key` exists (one HEAD, retried when transient); StorageError when storage cannot say."""

    def head() -> bool:
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:
            if error_code(exc)[1] == 404:
                return False
            raise

    return with_retries(what, head, policy)


def client_settings(env: Mapping[str, str]) -> dict:
    """The keyword arguments for botocore's S3 client from the standard AWS_* variables.

    Unset variables are left to botocore's own defaults (its credential chain; us-east-1, from which
    S3 redirects to a bucket's own region).
    StorageConfigError names a variable whose value cannot work.
    """
    style = env.get("AWS_S3_URL_STYLE", "").strip().lower()
    if style and style not in URL_STYLES:
        raise StorageConfigError(f"AWS_S3_URL_STYLE must be 'path' or 'virtual', got {style!r}")
    endpoint = env.get("AWS_ENDPOINT_URL", "").strip() or None
    # The endpoint is shown (check, the dashboard, the API, errors), so it must hold nothing secret,
    # and a refusal names the problem without echoing the value.
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise StorageConfigError(
            "AWS_ENDPOINT_URL must start with https:// (or http://), e.g. https://storage.railway.app"
        )
    if endpoint is not None and "@" in urlsplit(endpoint).netloc:
        raise StorageConfigError(
            "AWS_ENDPOINT_URL must not hold credentials (user:password@): set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
        )
    return {
        "endpoint_url": endpoint,
        # botocore's own default for S3; it follows a bucket's redirect to its real region. Set here rather
        # than left to botocore, which would take an empty AWS_DEFAULT_REGION (a copied .env.example) as a region.
        "region_name": env.get("AWS_DEFAULT_REGION", "").strip() or "us-east-1",
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID") or None,
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY") or None,
        "aws_session_token": env.get("AWS_SESSION_TOKEN") or None,
        "addressing_style": style or "auto",
    }


class ClientBeingMade:
    """An S3 client made only when asked for: importing botocore and loading the S3 model cost ~0.3 s of
    CPU, which a run need not spend before pg_dump has started. `begin()` starts making it in a thread
    of its own (say, once pg_dump is running); the first use waits for it (beginning it if nobody did),
    and a failure to make it is raised there."""

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self._future: Future = Future()
        self._begun = threading.Lock()

    def begin(self) -> None:
        if self._begun.acquire(blocking=False):
            threading.Thread(target=self._run, name="s3-client", daemon=True).start()

    def _run(self) -> None:
        try:
            self._future.set_result(self._make())
        except BaseException as exc:  # handed to the thread that uses the client
            self._future.set_exception(exc)

    def __getattr__(self, name: str):
        self.begin()
        return getattr(self._future.result(), name)


def make_part_client(env: Mapping[str, str]):
    """The client that sends an upload's parts: its send deadline is SEND_STALL_S.

    urllib3 (under botocore) applies the client's *connect* timeout to writing the request too, and
    botocore has no separate setting; so the parts go through a client of their own whose connect
    timeout is SEND_STALL_S. Its connections are opened after the upload's first request (through the
    ordinary client) has already connected within CONNECT_TIMEOUT_S.

    Its requests' bodies are not hashed for their signatures (UNSIGNED-PAYLOAD): every part carries a checksum
    the storage checks (upload.py), as botocore itself decides over https for a body with a Content-MD5. Over
    https it would otherwise sha256 each part beside its CRC32 (0.05 s per 57 MB here).
    """
    return make_client(env, connect_timeout_s=SEND_STALL_S, sign_payloads=False)


def make_client(
    env: Mapping[str, str],
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    sign_payloads: bool | None = None,
):
    """An S3 client configured from `env` (see `client_settings`), bounded in time.

    Shorter timeouts suit calls a person waits for (the dashboard's list); the defaults suit uploads.
    It is botocore's own client, the one boto3 wraps: boto3's session adds only methods this service
    does not call (upload_file, download_fileobj and the like, through s3transfer), and importing it
    cost ~0.08 s more of every `upload`'s CPU at the very moment pg_dump starts (bench/README.md).
    """
    from botocore.config import Config

    settings = client_settings(env)
    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        # Signature version 4 everywhere, presigned links included (botocore would presign with the
        # deprecated version 2, which AWS regions opened since 2014 and several providers refuse).
        signature_version="s3v4",
        # Retries are ours (with_retries): per part, logged, and stopped when the upload is aborted.
        retries={"total_max_attempts": 1},
        tcp_keepalive=True,
        max_pool_connections=4,
        s3={
            "addressing_style": settings.pop("addressing_style"),
            # None: botocore's choice (a body's sha256 is signed unless it goes over https with a Content-MD5)
            **({"payload_signing_enabled": sign_payloads} if sign_payloads is not None else {}),
        },
        # Parts carry a checksum of their own (upload.py): a CRC32 header where the storage keeps checksums,
        # asked for when the upload is created, else the Content-MD5 every S3-compatible store checks.
        # botocore's newer defaults add checksums to every request (streamed ones in aws-chunked
        # trailers), which some stores refuse.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="backup_svc",
        # AWS_ENDPOINT_URL is read above from the same settings as everything else (an empty one
        # means AWS); botocore must not read it again from the environment or its config files.
        ignore_configured_endpoint_urls=True,
    )
    with _LOADER_LOCK:
        return _botocore_session().create_client("s3", config=config, **settings)


# botocore's loaded service descriptions (S3's is ~13 MB in memory once parsed), shared by every client of
# the process: an upload holds two clients (parts go through their own) and its history and notifications
# more, and each new session would otherwise parse them again. Each client keeps a session of its own
# (credentials are resolved per session), only the read-only data loader is shared.
_LOADER = None
_LOADER_LOCK = threading.Lock()


def _botocore_session():
    global _LOADER
    import botocore.session

    core = botocore.session.Session()
    if _LOADER is None:
        _LOADER = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _LOADER)
    return core
