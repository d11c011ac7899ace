"""Connections and HTTP/1.1 request framing for the buffering worker: where a request's head and body end.

Parsing proper (header syntax, limits, chunk decoding) stays with gunicorn's parser; this only has to find
the boundaries, so that a thread is given a request only once every byte of it has arrived. A request line or
header name that is not HTTP is refused here with slimserve's JSON 400 (gunicorn would answer an HTML page).
"""

from __future__ import annotations

import math
import re
import socket
import time

import orjson

REASONS = {200: "OK", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}
MESSAGES = {
    "overloaded": "the server is busy with other predictions; retry after the number of seconds in Retry-After",
    "request_timeout": "the request was not received in time",
    "headers_too_large": "the request line and headers are too large",
    "bad_framing": "the request's Content-Length or Transfer-Encoding cannot be used",
    "too_many_connections": "the server has too many open connections; retry shortly",
    "bad_request_line": "the request line must be `METHOD target HTTP/1.1`",
    "bad_header": "a header name is not an HTTP token, or a header line has no colon",
}
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(rb"^" + _TOKEN + rb" [^\s]+ HTTP/1\.[01]$")
_HEADER_NAME = re.compile(rb"^" + _TOKEN + rb"$")


class RequestBuffer:
    """Bytes of one request as they arrive; `state` says whether it is complete.

    States: `reading`; `complete` (head and body are here); `oversized` (the body is larger than we buffer:
    the app refuses it with 413 while reading); `bad` (the head is too large or its framing is invalid).
    """

    def __init__(self, max_head: int, max_body: int, data: bytes = b"") -> None:
        self.max_head, self.max_body = max_head, max_body
        self.data = bytearray(data)
        self.state = "reading"
        self.problem = ""
        self.head_end: int | None = None
        self.end: int | None = None
        self.method = self.path = ""
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = True  # HTTP/1.1 default; `Connection: close` or HTTP/1.0 turn it off
        self.expects_continue = False  # `Expect: 100-continue`: the client waits for a 100 before its body
        self._scan = 0  # chunked: offset of the next chunk-size line
        if data:
            self.feed(b"")

    def feed(self, chunk: bytes) -> None:
        """Add received bytes and advance the state."""
        self.data += chunk
        if self.state != "reading":
            return
        if self.head_end is None and not self._find_head():
            return
        if self.chunked:
            self._scan_chunks()
        elif len(self.data) >= self.end:
            self.state = "complete"

    def _find_head(self) -> bool:
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            if len(self.data) > self.max_head:
                self.state, self.problem = "bad", "headers_too_large"
            return False
        if end > self.max_head:
            self.state, self.problem = "bad", "headers_too_large"
            return False
        self.head_end = end + 4
        lines = bytes(self.data[:end]).split(b"\r\n")
        if not _REQUEST_LINE.match(lines[0]):
            self.state, self.problem = "bad", "bad_request_line"
            return False
        parts = lines[0].split(b" ")
        self.method = parts[0].decode("latin-1")[:16]
        self.path = parts[1].split(b"?", 1)[0].decode("latin-1")[:256] if len(parts) > 1 else ""
        lengths, codings = [], []
        self.keep_alive = not lines[0].endswith(b"HTTP/1.0")
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _HEADER_NAME.match(name):
                self.state, self.problem = "bad", "bad_header"
                return False
            name = name.lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings.append(value.strip().lower())
            elif name == b"expect":
                self.expects_continue = value.strip().lower() == b"100-continue"
            elif name == b"connection":
                tokens = value.strip().lower()
                self.keep_alive = b"close" not in tokens and (self.keep_alive or b"keep-alive" in tokens)
        if codings:
            if lengths or codings[-1].split(b",")[-1].strip() != b"chunked":
                self.state, self.problem = "bad", "bad_framing"
                return False
            self.chunked, self._scan = True, self.head_end
            return True
        if len(set(lengths)) > 1 or (lengths and not lengths[0].isdigit()):
            self.state, self.problem = "bad", "bad_framing"
            return False
        self.content_length = int(lengths[0]) if lengths else 0
        if self.content_length > self.max_body:
            self.state = "oversized"
            return False
        self.end = self.head_end + self.content_length
        return True

    def _scan_chunks(self) -> None:
        data = self.data
        while True:
            line_end = data.find(b"\r\n", self._scan)
            if line_end < 0:
                if len(data) - self._scan > 1024:
                    self.state, self.problem = "bad", "bad_framing"
                return
            size_field = bytes(data[self._scan:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                self.state, self.problem = "bad", "bad_framing"
                return
            if size == 0:  # the last chunk, then optional trailers, then an empty line
                trailers_end = data.find(b"\r\n\r\n", line_end)
                if trailers_end >= 0:
                    self.end, self.state = trailers_end + 4, "complete"
                return
            next_scan = line_end + 2 + size + 2
            if next_scan - self.head_end > self.max_body:
                self.state = "oversized"
                return
            if len(data) < next_scan:
                return
            self._scan = next_scan

    def take(self) -> bytes:
        """The bytes to hand to the parser: the whole request, or everything so far when oversized."""
        return bytes(self.data[:self.end]) if self.state == "complete" else bytes(self.data)

    @property
    def leftover(self) -> bytes:
        """Bytes after a complete request (a pipelined next request)."""
        return bytes(self.data[self.end:]) if self.state == "complete" else b""


class BufferedSocket:
    """What gunicorn's parser sees: the buffered request bytes, then EOF (or the socket, when passing through).

    Everything else (`sendall`, `fileno`, …) is the real socket's.
    """

    def __init__(self, sock: socket.socket, data: bytes, passthrough: bool) -> None:
        self._sock = sock
        self._data = memoryview(data)
        self._passthrough = passthrough  # an oversized body: the app refuses it with 413 while reading

    def recv(self, size: int) -> bytes:
        """The next buffered bytes."""
        if self._data:
            chunk, self._data = bytes(self._data[:size]), self._data[size:]
            return chunk
        return self._sock.recv(size) if self._passthrough else b""

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class Conn:
    """One client connection: its socket, the request being buffered, and its deadlines."""

    def __init__(self, sock: socket.socket, client, server, limits: dict) -> None:
        self.sock, self.client, self.server, self.limits = sock, client, server, limits
        self.parser = None
        self.held = 0  # bytes of this connection's unfinished request counted in the worker's budget
        self.passthrough = False
        self.draining_until: float | None = None
        self.reset(b"")
        sock.setblocking(False)

    def reset(self, leftover: bytes) -> None:
        """Start buffering the next request (pipelined bytes included)."""
        self.buffer = RequestBuffer(self.limits["MAX_HEADER_BYTES"], self.limits["MAX_BUFFERED_BODY"], leftover)
        self.opened = self.progress = time.monotonic()

    def expired(self, now: float, keepalive: float) -> str | None:
        """Why this connection is past a deadline, or None."""
        if self.draining_until is not None:
            return "drained" if now > self.draining_until else None
        buf, limits = self.buffer, self.limits
        if not buf.data:
            return "idle" if now - self.progress > keepalive else None
        if now - self.progress > limits["IDLE_SECONDS"]:
            return "stalled"  # e.g. a body shorter than its Content-Length
        if buf.head_end is None:
            return "slow_headers" if now - self.opened > limits["HEADER_SECONDS"] else None
        allowed = limits["HEADER_SECONDS"] + (buf.content_length or 0) / limits["MIN_BODY_RATE"]
        return "slow_body" if now - self.opened > allowed else None


class LoopCounters:
    """What the loop counts: predictions finished and shed this second and the last (the basis of Retry-After),
    and its own answers (shed, timeouts, bad heads) since the last summary line in the log."""

    def __init__(self, summary_seconds: float = 10.0) -> None:
        self.window, self.last, self.started = {"done": 0, "shed": 0}, {"done": 0, "shed": 0}, 0.0
        self.answered: dict[str, int] = {}
        self.summary_seconds, self.summarized = summary_seconds, time.monotonic()

    def done(self) -> None:
        """Count a finished prediction."""
        self.window["done"] += 1

    def shed(self) -> int:
        """Count a shed request; the Retry-After (s) to give it."""
        self.window["shed"] += 1
        return retry_seconds(self.last["shed"], self.last["done"])

    def answer(self, code: str) -> None:
        """Count one answer the loop gave itself."""
        self.answered[code] = self.answered.get(code, 0) + 1

    def tick(self, now: float) -> str | None:
        """Start a new one-second window when the current one is over; a summary line when one is due."""
        if now - self.started >= 1.0:
            self.last, self.window, self.started = self.window, {"done": 0, "shed": 0}, now
        if not self.answered or now - self.summarized < self.summary_seconds:
            return None
        counts = ", ".join(f"{count} {code}" for code, count in sorted(self.answered.items()))
        line = f"answered by the event loop in the last {now - self.summarized:.0f} s: {counts}"
        self.answered, self.summarized = {}, now
        return line


def retry_seconds(shed: int, done: int) -> int:
    """Seconds a shed client should wait: about how long the service needs for the clients shed before it.

    A fixed 1 s brings every shed client back at once, and at 0.1 vCPU answering them costs the CPU the
    predictions need; `shed` per second over `done` per second spreads them out (1-30 s).
    """
    return min(30, max(1, math.ceil(shed / max(done, 1))))
LOOP_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"  # = slimserve.headers.API_CSP


def error_bytes(status: int, code: str, request_id: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP response in slimserve's error shape, for answers the event loop gives itself."""
    body = orjson.dumps({"error": {"code": code, "message": MESSAGES.get(code, code)}, "request_id": request_id})
    return response_bytes(status, body, request_id, retry_after)


def response_bytes(status: int, body: bytes, request_id: str, retry_after: int | None = None,
                   close: bool = True) -> bytes:
    """A whole JSON HTTP response with the headers every slimserve answer has."""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK' if status < 300 else 'Error')}",
            "Content-Type: application/json", f"Content-Length: {len(body)}",
            f"Connection: {'close' if close else 'keep-alive'}",
            f"X-Request-ID: {request_id}", "Cache-Control: no-store", "X-Content-Type-Options: nosniff",
            # The security headers the app adds to its own answers (slimserve.headers), for the loop's answers too.
            "Referrer-Policy: no-referrer", "X-Frame-Options: DENY", f"Content-Security-Policy: {LOOP_CSP}"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
