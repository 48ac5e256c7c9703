"""The S3 client's settings from AWS_* variables, and which errors are retried how."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from backup_svc.storage.client import (
    RetryPolicy,
    StorageConfigError,
    StorageError,
    client_settings,
    is_transient,
    make_client,
    with_retries,
)


def client_error(status: int, code: str) -> ClientError:
    """The error botocore raises for an S3 error answer (built by hand: this is about classifying it)."""
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "UploadPart"
    )


def test_settings_come_from_the_standard_variables():
    settings = client_settings(
        {
            "AWS_ENDPOINT_URL": "https://storage.railway.app",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "auto",
            "AWS_S3_URL_STYLE": "Virtual",
        }
    )
    assert settings == {
        "endpoint_url": "https://storage.railway.app",
        "region_name": "auto",
        "aws_access_key_id": "id",
        "aws_secret_access_key": "secret",
        "aws_session_token": None,
        "addressing_style": "virtual",
    }


def test_unset_variables_are_left_to_botocore():
    assert client_settings({}) == {
        "endpoint_url": None,
        "region_name": "us-east-1",
        "aws_access_key_id": None,
        "aws_secret_access_key": None,
        "aws_session_token": None,
        "addressing_style": "auto",
    }


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AWS_S3_URL_STYLE": "dns"}, "AWS_S3_URL_STYLE must be 'path' or 'virtual'"),
        ({"AWS_ENDPOINT_URL": "storage.railway.app"}, "AWS_ENDPOINT_URL must start with https://"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(StorageConfigError, match=message):
        client_settings(env)


def test_path_style_and_timeouts_reach_the_client():
    client = make_client(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_S3_URL_STYLE": "path",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "b",
        }
    )
    config = client.meta.config
    assert config.s3["addressing_style"] == "path"
    assert (config.connect_timeout, config.read_timeout) == (10, 60)
    assert config.retries["total_max_attempts"] == 1
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}, ExpiresIn=60)
    assert url.startswith("http://127.0.0.1:9/bkt/k?")


@pytest.mark.parametrize(
    "exc, transient",
    [
        (client_error(500, "InternalError"), True),
        (client_error(503, "SlowDown"), True),
        (client_error(429, "TooManyRequests"), True),
        (client_error(400, "RequestTimeout"), True),
        (client_error(403, "AccessDenied"), False),
        (client_error(404, "NoSuchBucket"), False),
        (client_error(400, "EntityTooSmall"), False),
        (ConnectionClosedError(endpoint_url="http://x"), True),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (SSLError(endpoint_url="https://x", error="bad certificate"), False),
        (NoCredentialsError(), False),
    ],
)
def test_which_errors_are_transient(exc, transient):
    assert is_transient(exc) is transient


def test_retries_transient_errors_then_succeeds(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    outcomes = [client_error(500, "InternalError"), ConnectionClosedError(endpoint_url="http://x"), "done"]

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries("uploading part 1", call, RetryPolicy(attempts=3)) == "done"
    assert outcomes == []


def test_gives_up_after_the_attempts_and_says_what_failed(monkeypatch):
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)
    calls = []

    def call():
        calls.append(1)
        raise client_error(503, "SlowDown")

    with pytest.raises(StorageError, match=r"uploading part 7 failed after 4 attempts: SlowDown \(HTTP 503\)"):
        with_retries("uploading part 7", call, RetryPolicy(attempts=4, first_delay_s=1, max_delay_s=3))
    assert len(calls) == 4
    assert len(slept) == 3 and 0.5 <= slept[0] <= 1 and 1 <= slept[1] <= 2 and 1.5 <= slept[2] <= 3


def test_a_permanent_error_is_not_retried(monkeypatch):
    calls = []

    def call():
        calls.append(1)
        raise client_error(403, "AccessDenied")

    with pytest.raises(StorageError, match=r"listing failed: AccessDenied \(HTTP 403\)"):
        with_retries("listing", call, RetryPolicy())
    assert calls == [1]


def test_a_cancelled_upload_stops_retrying(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    calls = []

    def call():
        calls.append(1)
        raise client_error(500, "InternalError")

    with pytest.raises(StorageError):
        with_retries("uploading part 2", call, RetryPolicy(attempts=5), cancelled=lambda: len(calls) >= 2)
    assert len(calls) == 2


def test_no_credentials_says_which_variables_to_set():
    with pytest.raises(StorageError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        with_retries("listing", lambda: (_ for _ in ()).throw(NoCredentialsError()), RetryPolicy())


def test_empty_variables_from_a_copied_env_example_mean_unset(monkeypatch):
    for name in (
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_S3_URL_STYLE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.setenv(name, "")
    client = make_client(dict(os.environ))
    assert (client.meta.region_name, client.meta.endpoint_url) == ("us-east-1", "https://s3.amazonaws.com")


def test_the_endpoint_comes_from_the_settings_given(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert make_client({}).meta.endpoint_url == "https://s3.amazonaws.com"
    assert make_client({"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}).meta.endpoint_url == "http://127.0.0.1:9"


def refused(server_time) -> Exception:
    """A 403 to a HEAD as botocore raises it: no body, so no error code beyond the status; the server's
    Date header is all there is. (A fault moto never produces: it checks neither clocks nor keys.)"""
    from email.utils import format_datetime

    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": "403", "Message": "Forbidden"},
            "ResponseMetadata": {
                "HTTPStatusCode": 403,
                "HTTPHeaders": {"date": format_datetime(server_time, usegmt=True)},
            },
        },
        "HeadObject",
    )


def test_a_403_says_whether_the_clock_or_the_credentials_are_wrong():
    """Issue 21, weaker finding: wrong credentials and clock skew both read "403 Forbidden"."""
    from datetime import datetime, timedelta, timezone

    from backup_svc.storage.client import describe

    now = datetime.now(timezone.utc)
    skewed = describe(refused(now + timedelta(minutes=40)))
    assert "clock" in skewed and "40 min" in skewed and "behind" in skewed
    agreed = describe(refused(now))
    assert "clocks agree" in agreed and "credentials" in agreed
