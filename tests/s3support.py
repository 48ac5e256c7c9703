"""Test helpers for object storage: moto's S3 server on loopback and a fault-injecting proxy before it, and
what an rclone remote's folder holds."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from backup_svc.pg.localcluster import free_port
from backup_svc.storage.client import RetryPolicy
from backup_svc.storage.loopback import LoopbackS3

S3_ERROR = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
    "<RequestId>fault</RequestId></Error>"
)

# Retries as in production but with short waits, so "5 attempts, then give up" takes a second, not eight.
FAST_RETRY = RetryPolicy(attempts=5, first_delay_s=0.05, max_delay_s=0.2)


# moto's S3 server (ThreadedMotoServer) on 127.0.0.1: the very server the demo runs for its stored backups.
MotoS3 = LoopbackS3


def s3_env(endpoint: str) -> dict[str, str]:
    """The AWS_* variables a user would set for this server (moto accepts any key)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test-key-id",
        "AWS_SECRET_ACCESS_KEY": "test-secret-" + "x" * 20,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_S3_URL_STYLE": "path",
    }


def new_bucket(client) -> str:
    """Create a bucket with a fresh name (tests share one server)."""
    name = "bkt-" + secrets.token_hex(6)
    client.create_bucket(Bucket=name)
    return name


def incomplete_uploads(client, bucket: str) -> list[dict]:
    """Every multipart upload in `bucket` that was neither completed nor aborted."""
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def all_keys(client, bucket: str) -> list[str]:
    """Every object key in `bucket` (all pages), sorted."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def object_keys(client, bucket: str) -> list[str]:
    """The keys in `bucket` apart from the history's events (`…_history/…`, which every run adds; the
    history tests look at those with `history_keys`)."""
    keys = [k for k in all_keys(client, bucket) if "_history/" not in k]
    # an object's sha256 record (`<key>.sha256`, issue 25) is part of it; a record without its object is
    # listed, so a test that expects nothing left sees one
    return [k for k in keys if not (k.endswith(".sha256") and k[: -len(".sha256")] in keys)]


def remote_files(folder) -> list[str]:
    """The names in an rclone remote's folder, sorted, without the history's `_history/` folder."""
    return sorted(n for n in os.listdir(folder) if n != "_history")


def every_file(folder) -> list[str]:
    """Every file below `folder` (an rclone remote's), `_history/` included, as sorted relative paths."""
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


def history_keys(client, bucket: str) -> list[str]:
    """The history's event keys in `bucket`, sorted (by time, then run and number)."""
    return [k for k in all_keys(client, bucket) if "_history/" in k]


HOLD_MAX_S = 60  # a forgotten release() ends a held request after this long, not never


class FaultProxy:
    """An HTTP proxy on loopback that forwards to an S3 server and injects faults on request.

    It stands in for a storage provider's bad moments (5xx answers, dropped connections, a lying
    read-back) that the real server never produces. Rules are matched in order; each is a
    (predicate, actions) pair and every matching request takes the next action:
      "500"        answer 500 InternalError (after reading the request body, as a server would)
      "403"        answer 403 AccessDenied (a key without that permission)
      "drop"       read part of the body, then reset the connection
      "cut:N"      forward, but reset the connection after N bytes of the response body
      "tamper"     forward, with the x-amz-meta-sha256 header replaced
      "etag"       forward, with the ETag in the answer's XML body replaced (a storage that assembled
                   other bytes than the parts it acknowledged)
      "flip"       forward, with one byte of the answer's body flipped (a corruption in transit)
      "short"      forward a HEAD with its Content-Length one byte short (the sha256 header intact)
      "flip-body"  forward the request with one byte of its body flipped (a corruption on the way in)
      "crc"        forward, with the answer's x-amz-checksum-crc32 replaced (a checksum of other bytes)
      "nochecksum" forward the request without its x-amz-checksum-* / x-amz-sdk-checksum-algorithm headers, and
                   the answer without any checksum (a storage that does not know S3's checksums)
      "refuse-checksum"  answer 400 InvalidArgument to a request naming a checksum algorithm, forward the rest
      "slow:S"     wait S seconds, then forward (a slow link: keeps an upload running for a test)
      "hold"       wait until the test calls `release()` (at most HOLD_MAX_S), then forward: a storage
                   that has not answered yet, for as long as the test needs to look at the page
      "forward"    pass it on unchanged
    The last action repeats when `repeat_last` is set, else requests pass once the actions run out.
    `log` records (method, path+query, action) of every request, `headers` its (method, path+query, headers)
    with the header names in lower case.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.rules: list[dict] = []
        self.log: list[tuple[str, str, str]] = []
        self.headers: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    # -- rules ---------------------------------------------------------------------------------
    def add(self, predicate, actions: list[str], repeat_last: bool = False) -> None:
        with self._lock:
            self.rules.append({"match": predicate, "actions": list(actions), "repeat": repeat_last})

    def release(self) -> None:
        """Let every held request (and any later "hold") through."""
        self._released.set()

    def fail_part(self, number: int, actions: list[str], repeat_last: bool = False) -> None:
        """Faults for the PUTs of multipart part `number`."""
        self.add(
            lambda method, path, query: method == "PUT" and query.get("partNumber") == [str(number)],
            actions,
            repeat_last,
        )

    def slow_parts(self, seconds: float) -> None:
        """Every part upload waits `seconds` first: the upload (and pg_dump behind it) runs for a while."""
        self.add(
            lambda method, path, query: method == "PUT" and "partNumber" in query, [f"slow:{seconds}"], repeat_last=True
        )

    def without_checksums(self) -> None:
        """From now on the storage knows no S3 checksums (a rule after the test's own: it applies to the rest)."""
        self.add(lambda method, path, query: True, ["nochecksum"], repeat_last=True)

    def part_headers(self) -> list[dict[str, str]]:
        """The headers of each multipart part's PUT (its last, if it was sent again), by part number."""
        parts = {}
        for method, target, headers in self.headers:
            number = re.search(r"[?&]partNumber=(\d+)", target)
            if method == "PUT" and number:
                parts[int(number.group(1))] = headers
        return [parts[number] for number in sorted(parts)]

    def attempts(self, number: int) -> list[str]:
        """The actions taken on each PUT of part `number`, in order."""
        return [
            action
            for method, target, action in self.log
            if method == "PUT" and re.search(rf"[?&]partNumber={number}(&|$)", target)
        ]

    def _next_action(self, method: str, path: str, query: dict) -> str:
        with self._lock:
            for rule in self.rules:
                if rule["match"](method, path, query) and rule["actions"]:
                    if len(rule["actions"]) > 1 or not rule["repeat"]:
                        return rule["actions"].pop(0)
                    return rule["actions"][0]
        return "forward"

    # -- proxying ------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        target = urlsplit(handler.path)
        query = parse_qs(target.query, keep_blank_values=True)
        action = self._next_action(handler.command, target.path, query)
        self.log.append((handler.command, handler.path, action))
        self.headers.append((handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}))
        length = int(handler.headers.get("Content-Length") or 0)
        if action == "drop":
            handler.rfile.read(min(length, 1024))
            _reset(handler)
            return
        body = handler.rfile.read(length) if length else b""
        if action.startswith("slow:"):
            time.sleep(float(action[5:]))
        if action == "hold":
            self._released.wait(HOLD_MAX_S)
        if action == "refuse-checksum" and "x-amz-checksum-algorithm" in {k.lower() for k in handler.headers}:
            action = "400"
        if action in ("500", "403", "400"):
            code = {"500": "InternalError", "403": "AccessDenied", "400": "InvalidArgument"}[action]
            payload = S3_ERROR.format(code=code, message="injected fault").encode()
            handler.send_response(int(action))
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("connection", "keep-alive")}
            if action == "nochecksum":
                headers = {k: v for k, v in headers.items() if not _is_checksum_header(k)}
            if action == "flip-body" and body:
                body = bytes([body[0] ^ 0x01]) + body[1:]
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            if action == "etag":
                payload = re.sub(rb"<ETag>[^<]*</ETag>", b"<ETag>&quot;" + b"0" * 32 + b"-1&quot;</ETag>", payload)
            if action == "flip" and payload:
                payload = bytes([payload[0] ^ 0x01]) + payload[1:]
            if action == "nochecksum":
                payload = re.sub(rb"<Checksum\w*>[^<]*</Checksum\w*>", b"", payload)
            handler.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() in ("transfer-encoding", "connection", "content-length", "server", "date"):
                    continue
                if action == "tamper" and key.lower() == "x-amz-meta-sha256":
                    value = "0" * 64
                if action == "crc" and key.lower() == "x-amz-checksum-crc32":
                    value = "AAAAAA=="
                if action == "nochecksum" and _is_checksum_header(key):
                    continue
                handler.send_header(key, value)
            length = response.getheader("Content-Length") if handler.command == "HEAD" else len(payload)
            if action == "short" and handler.command == "HEAD" and length is not None:
                length = int(length) - 1
            handler.send_header("Content-Length", str(length or 0))
            handler.end_headers()
            if handler.command == "HEAD":
                return
            if action.startswith("cut:"):
                handler.wfile.write(payload[: int(action[4:])])
                handler.wfile.flush()
                _reset(handler)
                return
            handler.wfile.write(payload)
        finally:
            upstream.close()


def _is_checksum_header(name: str) -> bool:
    return name.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum-"))


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Drop the client's connection abruptly (RST), as a dying load balancer would."""
    handler.close_connection = True
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def seed_backup(
    client, bucket: str, key: str, data: bytes | None = None, *, owner: dict[str, str] | None = None
) -> str:
    """Put a small valid gzip backup at `key` with the metadata an upload writes; return its sha256.

    For states a test cannot wait for (a backup stored days ago); the listing and the links read
    these objects exactly as they read uploaded ones. `owner` is the ownership record (`owned`):
    without it the object is not any service's backup, and nothing lists it.
    """
    import gzip
    import hashlib

    data = data if data is not None else gzip.compress(b"-- seeded backup\n-- PostgreSQL database dump complete\n")
    digest = hashlib.sha256(data).hexdigest()
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ContentType="application/gzip",
        Metadata={
            "sha256": digest,
            "server-version": "15.8",
            "pg-dump-version": "15.8",
            "sql-bytes": "60",
            "duration-s": "0.1",
            **(owner or {}),
        },
    )
    return digest


class SilentStorage:
    """A TCP server on loopback that accepts connections and never answers: a storage that hangs.

    Real storage providers do this when overloaded or half-down; nothing else on loopback can.
    """

    def __init__(self):
        self.port = free_port()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SilentStorage":
        self._thread.start()
        return self

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                self._held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()


def owned(system_identifier: str, backup_name: str, database: str | None = None) -> dict[str, str]:
    """The ownership record an upload of the service (backup name, database, cluster) writes."""
    return {
        "written-by": "backup_svc",
        "backup-name": backup_name,
        "database": database or backup_name,
        "system-identifier": system_identifier,
    }


def cluster_identity(pg_cluster) -> str:
    """The test cluster's system identifier: what the service records as its backups' owner."""
    with pg_cluster.connect() as db:
        return db.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]


def stored_metadata(client, bucket: str, key: str) -> dict[str, str]:
    """A stored backup's metadata as every reader sees it: its own, completed from its `<key>.sha256`
    record (issue 25: the sha256 and the final metadata live there)."""
    from backup_svc.storage.reader import open_object

    with open_object(client, bucket, key) as opened:
        return dict(opened.metadata)


def corrupt_in_place(client, bucket: str, key: str, body: bytes) -> None:
    """Replace a stored backup's bytes as storage-side rot would: the object's own metadata kept and its
    sha256 record still naming it (a re-PUT changes the ETag, which rot would not, so the record is
    re-pointed at the new ETag)."""
    head = client.head_object(Bucket=bucket, Key=key)
    answer = client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=head["Metadata"])
    record_key = key + ".sha256"
    try:
        record = client.get_object(Bucket=bucket, Key=record_key)
    except Exception:
        return  # an old-style object: its sha256 is in its own metadata, kept above
    metadata = {**record["Metadata"], "object-etag": answer["ETag"].strip('"'), "object-size": str(len(body))}
    client.put_object(Bucket=bucket, Key=record_key, Body=record["Body"].read(), Metadata=metadata)
