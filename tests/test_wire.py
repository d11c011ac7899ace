"""Request framing for the buffering worker: a request is complete only when every byte of it is here."""

from __future__ import annotations

import orjson
import pytest

from slimserve.wire import RequestBuffer, error_bytes, retry_seconds

HEAD = b"POST /predict?filename=x.jpeg HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"


def fed(*chunks: bytes, max_head: int = 1024, max_body: int = 100) -> RequestBuffer:
    buffer = RequestBuffer(max_head, max_body)
    for chunk in chunks:
        buffer.feed(chunk)
    return buffer


def test_a_get_is_complete_at_the_end_of_its_head():
    buffer = fed(b"GET /health HTTP/1.1\r\nHost: a\r\n", b"\r\n")
    assert buffer.state == "complete" and buffer.method == "GET" and buffer.path == "/health"


def test_a_body_is_complete_only_when_content_length_bytes_arrived():
    buffer = fed(HEAD, b"abcd")
    assert buffer.state == "reading"
    buffer.feed(b"e")
    assert buffer.state == "complete" and buffer.take() == HEAD + b"abcde"


def test_the_path_never_carries_the_query_string():
    assert fed(HEAD).path == "/predict"


def test_bytes_after_a_request_are_kept_for_the_next_one():
    buffer = fed(HEAD + b"abcdeGET /health HTTP/1.1\r\n\r\n")
    assert buffer.state == "complete" and buffer.leftover == b"GET /health HTTP/1.1\r\n\r\n"
    follower = RequestBuffer(1024, 100, buffer.leftover)
    assert follower.state == "complete" and follower.path == "/health"


@pytest.mark.parametrize("trailers", [b"", b"X-Trailer: 1\r\n"])
def test_a_chunked_body_is_complete_after_the_last_chunk_and_trailers(trailers):
    head = b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    buffer = fed(head, b"3\r\nabc\r\n", b"2;ext=1\r\nde\r\n")
    assert buffer.state == "reading"
    buffer.feed(b"0\r\n" + trailers)
    assert buffer.state == "reading"
    buffer.feed(b"\r\nGET / HTTP/1.1\r\n\r\n")
    assert buffer.state == "complete" and buffer.leftover == b"GET / HTTP/1.1\r\n\r\n"


def test_a_chunked_body_split_inside_a_chunk_waits_for_the_rest():
    buffer = fed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"a\r\n01234")
    assert buffer.state == "reading"
    buffer.feed(b"56789\r\n0\r\n\r\n")
    assert buffer.state == "complete"


def test_a_declared_body_over_the_buffer_limit_is_oversized_and_handed_on():
    buffer = fed(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\nab")
    assert buffer.state == "oversized" and buffer.take().endswith(b"ab")


def test_a_chunked_body_growing_over_the_limit_is_oversized():
    buffer = fed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"40\r\n" + b"x" * 64 + b"\r\n",
                 b"40\r\n")
    assert buffer.state == "oversized"


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: -5\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
])
def test_ambiguous_framing_is_bad(headers):
    buffer = fed(b"POST / HTTP/1.1\r\n" + headers + b"\r\n")
    assert buffer.state == "bad" and buffer.problem == "bad_framing"


@pytest.mark.parametrize(("head", "problem"), [
    (b'{"records": [1]}\r\n', "bad_request_line"),  # a body sent without Content-Length, read as a request
    (b"GET /\r\n", "bad_request_line"),
    (b"G(T / HTTP/1.1\r\n", "bad_request_line"),
    (b"GET / HTTP/2.0\r\n", "bad_request_line"),
    (b"POST / HTTP/1.1\r\nContent-Length : 5\r\n", "bad_header"),  # space before the colon: smuggling bait
    (b"POST / HTTP/1.1\r\nX-Probe\x00: 1\r\n", "bad_header"),
    (b"POST / HTTP/1.1\r\nno colon here\r\n", "bad_header"),
])
def test_heads_that_are_not_http_are_bad(head, problem):
    buffer = fed(head + b"\r\n")
    assert buffer.state == "bad" and buffer.problem == problem


def test_an_invalid_chunk_size_is_bad():
    buffer = fed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert buffer.state == "bad"


def test_a_head_that_never_ends_is_bad_once_over_the_limit():
    buffer = fed(b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 2000)
    assert buffer.state == "bad" and buffer.problem == "headers_too_large"


def test_loop_answers_are_complete_http_responses_in_the_error_shape():
    raw = error_bytes(503, "overloaded", "rid1", retry_after=1)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1" in head
    assert f"Content-Length: {len(body)}".encode() in head and b"Connection: close" in head
    assert orjson.loads(body) == {"error": {"code": "overloaded", "message": orjson.loads(body)["error"]["message"]},
                                  "request_id": "rid1"}


@pytest.mark.parametrize(("shed", "done", "seconds"), [
    (0, 0, 1), (5, 10, 1), (117, 11, 11), (5000, 1, 30), (40, 0, 30)])
def test_retry_after_spreads_shed_clients_over_the_time_needed_to_serve_them(shed, done, seconds):
    assert retry_seconds(shed, done) == seconds
