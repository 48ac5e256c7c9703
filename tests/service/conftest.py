"""Fixtures for the object-storage tests: one moto S3 server per session, a fresh bucket per test."""
from __future__ import annotations

import pytest

from backup_svc.storage.client import make_client

from tests.s3support import FaultProxy, MotoS3, new_bucket, s3_env


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server on 127.0.0.1 for the whole session."""
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_s3):
    """A client straight to the server (the test's own view of the bucket), and a fresh bucket."""
    client = make_client(s3_env(moto_s3.endpoint))
    return client, new_bucket(client)


@pytest.fixture
def fault_proxy(moto_s3):
    """A fault-injecting proxy in front of the server, and a client that goes through it."""
    proxy = FaultProxy(moto_s3.port).start()
    yield proxy, make_client(s3_env(proxy.endpoint))
    proxy.stop()
