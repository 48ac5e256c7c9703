"""Reading a stored object as a stream from moto's S3 server, resuming after a dropped connection."""

from __future__ import annotations

import gzip
import os

import pytest

from backup_svc.storage.client import StorageError
from backup_svc.storage.reader import open_object

from tests.s3support import FAST_RETRY


def test_reads_the_object_whole_with_its_metadata(s3):
    client, bucket = s3
    data = os.urandom(3 * 1024 * 1024)
    client.put_object(Bucket=bucket, Key="a/b.sql.gz", Body=data, Metadata={"sha256": "abc"})
    with open_object(client, bucket, "a/b.sql.gz", FAST_RETRY) as stream:
        assert stream.size == len(data) and stream.metadata == {"sha256": "abc"}
        assert stream.read() == data


def test_a_connection_dropped_mid_object_resumes_where_it_stopped(s3, fault_proxy):
    """The proxy cuts the first GET after 1 MB (a fault moto cannot make); reading goes on with a ranged
    GET, and gzip (which checks CRC and length) gets every byte once."""
    client, bucket = s3
    proxy, via_proxy = fault_proxy
    plain = os.urandom(2 * 1024 * 1024) * 2
    client.put_object(Bucket=bucket, Key="x.sql.gz", Body=gzip.compress(plain, 1))
    proxy.add(lambda method, path, query: method == "GET" and path.endswith("/x.sql.gz"), ["cut:1000000"])
    with open_object(via_proxy, bucket, "x.sql.gz", FAST_RETRY) as stream:
        assert gzip.GzipFile(fileobj=stream).read() == plain
    gets = [entry for entry in proxy.log if entry[0] == "GET" and entry[1].endswith("/x.sql.gz")]
    assert [action for _, _, action in gets] == ["cut:1000000", "forward"]


def test_a_missing_object_is_a_clear_error(s3):
    client, bucket = s3
    with pytest.raises(StorageError, match="NoSuchKey"):
        open_object(client, bucket, "nope.sql.gz", FAST_RETRY)
