"""Odd and hostile HTTP/1.1 requests, for the tests that hold the worker to gunicorn's parsing and the
service to its answers: Content-Length spellings, Transfer-Encoding variants, smuggling attempts,
malformed heads. Each is a whole request (with its body where it announces one)."""

from __future__ import annotations

from gunicorn.config import Config
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.parser import RequestParser

from backup_svc.serving.arrival import MAX_BUFFERED_BODY

BODY = b"x" * 100


def head(*fields: str, line: str = "POST /api/v1/stored HTTP/1.1") -> bytes:
    return ("\r\n".join([line, "Host: x", *fields]) + "\r\n\r\n").encode("latin-1")


CORPUS = {
    # Content-Length: any number of digits, leading zeros, blanks around it
    "plain": head("Content-Length: 100") + BODY,
    "13 digits": head("Content-Length: 0000000000000100") + BODY,
    "40 digits": head("Content-Length: " + "0" * 37 + "100") + BODY,
    "blanks": head("Content-Length: \t 100 \t") + BODY,
    "no blank": head("Content-Length:100") + BODY,
    "lower case": head("content-length: 100") + BODY,
    "zero": head("Content-Length: 0"),
    "no body": head(),
    "over the buffered limit": head(f"Content-Length: {MAX_BUFFERED_BODY + 1}"),
    "twenty digits": head("Content-Length: 99999999999999999999"),
    # Content-Length that gunicorn refuses (400) — never taken for "no body"
    "plus sign": head("Content-Length: +100") + BODY,
    "minus": head("Content-Length: -1"),
    "exponent": head("Content-Length: 1e2") + BODY,
    "hex": head("Content-Length: 0x64") + BODY,
    "underscore": head("Content-Length: 1_00") + BODY,
    "superscript digit": head("Content-Length: \u00b2") + BODY,
    "list": head("Content-Length: 100, 100") + BODY,
    "duplicate": head("Content-Length: 100", "Content-Length: 100") + BODY,
    "duplicate, different": head("Content-Length: 100", "Content-Length: 5") + BODY,
    "space before colon": head("Content-Length : 100") + BODY,
    "obs-fold": head("Content-Length:", " 100") + BODY,
    # Transfer-Encoding
    "chunked": head("Transfer-Encoding: chunked") + b"64\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunked, upper case": head("Transfer-Encoding: CHUNKED") + b"0\r\n\r\n",
    "CL and TE": head("Content-Length: 100", "Transfer-Encoding: chunked") + BODY,
    "xchunked": head("Transfer-Encoding: xchunked") + BODY,
    "chunked twice": head("Transfer-Encoding: chunked, chunked") + b"0\r\n\r\n",
    "chunked then identity": head("Transfer-Encoding: chunked, identity") + b"0\r\n\r\n",
    "gzip only": head("Transfer-Encoding: gzip") + BODY,
    "chunked on HTTP/1.0": head("Transfer-Encoding: chunked", line="POST / HTTP/1.0") + b"0\r\n\r\n",
    "Expect: 100-continue": head("Content-Length: 100", "Expect: 100-continue"),
    # malformed heads
    "NUL in a value": head("X-A: a\x00b"),
    "bare CR in a value": head("X-A: a\rb"),
    "bare LF line end": b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    "HTTP/0.9": b"GET /\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "control byte in the target": b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    "two Hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no Host on 1.1": b"GET / HTTP/1.1\r\n\r\n",
    "long request line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "pipelined": head("Content-Length: 100") + BODY + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
}


PEER = ("127.0.0.1", 50000)


def _cfg() -> Config:
    cfg = Config()
    # The service's own limits and trust (serving/server.py gunicorn_options).
    cfg.set("limit_request_line", 8190)
    cfg.set("limit_request_field_size", 16384)
    cfg.set("forwarded_allow_ips", "")
    return cfg


CFG = _cfg()


def gunicorn_reads(data: bytes):
    """What gunicorn's parser makes of `data`: ("refused", error), ("chunked", None) or ("length", n)."""
    try:
        request = next(RequestParser(CFG, [data], PEER))
    except Exception as exc:  # noqa: BLE001 — every refusal counts
        return "refused", type(exc).__name__
    reader = request.body.reader
    if isinstance(reader, ChunkedReader):
        return "chunked", None
    assert isinstance(reader, LengthReader)
    return "length", reader.length
