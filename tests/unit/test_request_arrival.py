"""The worker's "has the request arrived?" against gunicorn's own parser, on one corpus of odd heads.

The worker reads a request in its event loop and hands it to a thread once it is all there; the
thread's gunicorn then parses the same bytes. If the two read a head differently — how long the
body is, whether there is one — a thread waits on a client (13-digit Content-Length, issue 22) or
requests desynchronise. Every case is given to both; they must agree.
"""

from __future__ import annotations

import pytest

from backup_svc.serving.arrival import MAX_BUFFERED_BODY, request_arrival
from tests.hostile_requests import BODY, CFG, CORPUS, PEER, gunicorn_reads


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_worker_reads_every_head_as_gunicorn_does(name):
    data = CORPUS[name]
    kind, value = gunicorn_reads(data)
    arrival = request_arrival(data, CFG, PEER)
    assert arrival.complete, f"{name}: gunicorn reads it as {kind} {value}, the worker waits for more"
    if kind in ("refused", "chunked") or (kind == "length" and value > MAX_BUFFERED_BODY) or b"Expect" in data:
        assert arrival.body_left, f"{name}: gunicorn reads it as {kind} {value}; its body must not be waited for"
        return
    head_length = data.index(b"\r\n\r\n") + 4
    assert not arrival.body_left
    assert arrival.needed == head_length + value, f"{name}: gunicorn reads a body of {value} bytes"
    if value:
        # One byte short: gunicorn would wait for it in a thread, so the worker must wait for it instead.
        assert not request_arrival(data[: head_length + value - 1], CFG, PEER).complete


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_a_head_not_yet_complete_is_waited_for(cut):
    data = CORPUS["13 digits"][:cut]
    assert BODY not in data
    assert not request_arrival(data, CFG, PEER).complete


def test_the_corpus_has_refused_chunked_and_length_requests():
    kinds = {gunicorn_reads(data)[0] for data in CORPUS.values()}
    assert kinds == {"refused", "chunked", "length"}
