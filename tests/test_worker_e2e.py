"""The buffering worker under real gunicorn: slow and lying clients, load shedding, probes, SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from tests.conftest import BUNDLED, SAMPLES, needs_shared
from tests.server_process import ServerProcess, all_at_once, multipart

pytestmark = pytest.mark.slow

# Rate limiting off: these tests send more predictions per minute than a client's budget on purpose.
UNLIMITED = {"MODEL_PATH": str(BUNDLED), "SLIMSERVE_RATE_LIMIT_ENABLED": "false"}
FAST_DEADLINES = {"SLIMSERVE_HEADER_TIMEOUT": "1.5", "SLIMSERVE_IDLE_TIMEOUT": "1", **UNLIMITED}


def sample_upload() -> tuple[bytes, str]:
    needs_shared(SAMPLES)
    path = sorted(SAMPLES.glob("*.jpeg"))[0]
    return multipart("file", path.name, path.read_bytes())


def raw_request(port: int, data: bytes, timeout: float = 20) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def predict_bytes(body: bytes, content_type: str) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


@pytest.fixture(scope="module")
def server():
    with ServerProcess(FAST_DEADLINES) as srv:
        srv.wait_ready()
        yield srv


def trickle(port: int, stop: threading.Event, opened: list) -> None:
    """A slowloris client: one byte of request head per 0.2 s until told to stop."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    opened.append(sock)
    for byte in b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 100:
        if stop.is_set():
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        stop.wait(0.2)


def test_trickling_clients_do_not_hold_the_threads_that_serve_others(server):
    stop, opened = threading.Event(), []
    threads = [threading.Thread(target=trickle, args=(server.port, stop, opened)) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        body, content_type = sample_upload()
        # Without the buffering worker, 20 connections each holding a thread stall both of these for good.
        assert server.request("GET", "/health")[0] == 200
        assert server.request("POST", "/predict", body, {"Content-Type": content_type})[0] == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in opened:
            sock.close()


def test_headers_trickled_past_the_deadline_get_408_and_the_connection_closes(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        answer = b""
        for _ in range(40):  # one header byte every 0.1 s: never idle, never finished
            try:
                sock.send(b"X")
            except OSError:
                break
            time.sleep(0.1)
        sock.settimeout(5)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
        assert status_of(answer) == 408 and b'"request_timeout"' in answer
        assert time.monotonic() - started < 10


def test_a_body_shorter_than_its_content_length_is_dropped_with_408(server):
    head = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
    answer = raw_request(server.port, head + b"\xff\xd8\xff" + b"\0" * 1000, timeout=10)
    assert status_of(answer) == 408 and b"request_timeout" in answer


def test_a_chunked_upload_is_buffered_and_answered(server):
    body, content_type = sample_upload()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096]) for i in range(0, len(body), 4096))
    head = (f"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    answer = raw_request(server.port, head + chunks + b"0\r\n\r\n")
    assert status_of(answer) == 200 and b'"prediction"' in answer


def test_expect_100_continue_gets_its_interim_answer_before_the_body(server):
    body, content_type = sample_upload()
    head = (f"POST /predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.5)  # a client waiting for the 100 (curl waits 1 s, then sends anyway)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(10)
        sock.sendall(body)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert b"HTTP/1.1 200 OK" in answer and b'"prediction"' in answer


def test_pipelined_requests_on_one_connection_are_all_answered(server):
    two = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    answer = raw_request(server.port, two)
    assert answer.count(b"HTTP/1.1 200 ") == 2 and b'"ready":true' in answer


def test_ambiguous_framing_is_refused_with_400(server):
    answer = raw_request(server.port, b"POST /predict HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc")
    assert status_of(answer) == 400 and b"bad_framing" in answer


def test_a_request_line_that_is_not_http_gets_our_json_400_not_an_html_page(server):
    answer = raw_request(server.port, b'{"records": [1]} / HTTP/1.1\r\nHost: t\r\n\r\n')
    assert status_of(answer) == 400 and b'"code":"bad_request_line"' in answer and b"<html" not in answer


def test_predictions_past_the_in_flight_bound_get_503_with_retry_after_at_once():
    body, content_type = sample_upload()
    request = predict_bytes(body, content_type)
    env = {**UNLIMITED, "SLIMSERVE_MAX_INFLIGHT": "1", "GUNICORN_THREADS": "1"}
    with ServerProcess(env) as srv:
        srv.wait_ready()
        answers = all_at_once(srv.port, request)  # all sent before any is answered: one can be in flight
        statuses = [status_of(a) for a in answers]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 1
        shed = next(a for a in answers if status_of(a) == 503)
        retry_after = int(shed.split(b"\r\nRetry-After: ", 1)[1].split(b"\r\n", 1)[0])
        assert 1 <= retry_after <= 30 and b'"overloaded"' in shed
        assert srv.request("GET", "/health")[0] == 200


def test_sigterm_under_load_fails_no_accepted_request():
    body, content_type = sample_upload()
    request = predict_bytes(body, content_type)
    results: list[int] = []
    refused: list[int] = []
    with ServerProcess(UNLIMITED) as srv:
        srv.wait_ready()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
                except OSError:
                    refused.append(1)  # never accepted: the listener is closed
                    return
                with sock:
                    try:
                        sock.sendall(request)
                        answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
                    except OSError:
                        answer = b""
                results.append(status_of(answer))

        workers = [threading.Thread(target=client) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.5)
        srv.process.send_signal(signal.SIGTERM)
        srv.process.wait(timeout=30)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert results and refused, "the load must span the shutdown"
    assert set(results) <= {200, 503}, f"failed in-flight requests: {[s for s in results if s not in (200, 503)]}"
    assert results.count(200) >= 1


def test_the_health_probe_is_json_and_never_shed(server):
    status, body, _ = server.request("GET", "/health")
    assert status == 200 and body == json.loads('{"status": "ok"}')
