"""A gunicorn worker that reads whole requests in its event loop before any thread sees them.

Why: gthread hands a connection to a thread as soon as one byte arrives, and the thread blocks reading the rest
(four clients trickling headers at 1 byte/s stalled every other client). Here the loop buffers each request
under deadlines, answers `/health` and `/ready` itself, and hands only complete requests to threads:
predictions (POST) to a bounded lane (past it: 503 + Retry-After at once), other routes to threads of their own.
"""
from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import threading
import time
import uuid
from concurrent import futures
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import ThreadWorker

from slimserve import config as settings
from slimserve.wire import BufferedSocket, Conn, LoopCounters, error_bytes, response_bytes

PREDICTION_NICE = 10
DRAIN_SECONDS = 2.0  # after an early answer, read and discard the unread body so the client sees the answer
SUMMARY_SECONDS = 10.0  # how often the loop's own answers are summed up in the log
ACCEPT_BATCH = 64  # connections accepted per turn of the loop, at most


def lower_priority() -> None:
    """Run this thread at nice +PREDICTION_NICE, so the loop (accepting, shedding, probes) runs first when it can."""
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREDICTION_NICE)


class BufferingWorker(ThreadWorker):
    """gthread with request buffering, read deadlines, a bounded prediction lane and a probe lane."""

    def init_process(self) -> None:
        """Read the limits from slimserve's one configuration place and build both thread pools."""
        env = settings.from_env()
        self.limits = {key: env[key] for key in settings.WORKER_SETTINGS}
        # The largest body any route takes; the routes' own limits (413) apply when the app reads it.
        self.limits["MAX_BUFFERED_BODY"] = max(env["MAX_UPLOAD_BYTES"], env["MAX_TABLE_BYTES"] or 0)
        self.inflight = 0
        self.buffered = 0  # bytes held by requests not yet handed to a thread, across connections
        self.conns: set[Conn] = set()
        self.counters = LoopCounters(SUMMARY_SECONDS)
        self.probe_pool = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe")
        super().init_process()

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        """The prediction lane: `threads` threads at a lower CPU priority than the loop and the probes."""
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="predict",
                                          initializer=lower_priority)

    def load_wsgi(self) -> None:
        """Load the app, then pick up the probes it offers for the loop to answer itself."""
        super().load_wsgi()
        extensions = getattr(self.wsgi, "extensions", {})
        self.probes = extensions.get("slimserve.probes", {})
        # Predictions answered here (shed, timed out) never reach the app: the audit trail records them via this.
        self.audit_loop = extensions.get("slimserve.audit_loop")

    def accept(self, server, listener) -> bool:
        """Accept every connection waiting (up to ACCEPT_BATCH), answering health probes first; False if none."""
        # One per turn would queue a probe behind every connection the kernel holds, each costing a whole turn.
        read: list[tuple[Conn, bool]] = []
        accepted = 0
        while accepted < ACCEPT_BATCH and self.accept_one(server, listener, read):
            accepted += 1
        for conn, had_head in sorted(read, key=lambda item: not self.is_probe(item[0].buffer)):
            self._advance(conn, had_head)
        return accepted > 0

    def is_probe(self, buf) -> bool:
        """Whether a buffered request is a whole health probe the loop answers itself."""
        return buf.state == "complete" and buf.method == "GET" and buf.path in self.probes

    def accept_one(self, server, listener, read: list | None = None) -> bool:
        """Accept a connection and read what came (no thread involved); False if none was waiting. With `read`,
        the request is not acted on: (conn, had_head) is appended for the caller."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return False
        conn = Conn(sock, client, server, self.limits)
        with self._lock:
            self.conns.add(conn)
            self.nr_conns += 1
        if self.nr_conns > self.worker_connections:
            self._reply(conn, 503, "too_many_connections", retry_after=self.counters.shed(), registered=False)
            return True
        self._watch(conn)
        # TCP_DEFER_ACCEPT: the kernel hands us connections once bytes arrived, so read them now rather than
        # after another turn of the loop (a probe is then answered within this call).
        self.on_client_socket_readable(conn, sock, read)
        return True

    def _watch(self, conn: Conn) -> None:
        with self._lock:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))

    def on_client_socket_readable(self, conn: Conn, client, read: list | None = None) -> None:
        """Read what arrived without blocking; answer or dispatch once the request is complete (or, given
        `read`, leave that to the caller)."""
        try:
            chunk = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            return self._drop(conn)
        conn.progress = time.monotonic()
        if conn.draining_until is not None:
            return  # discarding the body of a request already answered
        buf = conn.buffer
        had_head = buf.head_end is not None
        buf.feed(chunk)
        with self._lock:
            self.buffered += len(chunk)
            conn.held += len(chunk)
            over_budget = self.buffered > self.limits["BODY_BUDGET"]
        if over_budget and buf.state == "reading":
            return self._reply(conn, 503, "overloaded", retry_after=self.counters.shed(), drain=True)
        if read is not None:
            return read.append((conn, had_head))
        self._advance(conn, had_head)

    def _advance(self, conn: Conn, had_head: bool) -> None:
        """Act on the buffer's state: refuse a bad head, shed at a full lane, dispatch a whole request."""
        buf = conn.buffer
        if buf.state == "bad":
            return self._reply(conn, 431 if buf.problem == "headers_too_large" else 400, buf.problem)
        if not had_head and buf.head_end is not None:
            if not self._admit(conn):
                return self._reply(conn, 503, "overloaded", retry_after=self.counters.shed(),
                                   drain=buf.state == "reading")
            if buf.expects_continue and buf.state == "reading":  # curl waits ~1 s for this before sending
                with contextlib.suppress(OSError):
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.is_probe(buf):
            self._probe(conn)
        elif buf.state in ("complete", "oversized"):
            self._dispatch(conn)

    def _probe(self, conn: Conn) -> None:
        """Answer a health probe right here: at any load it costs microseconds and waits for no thread."""
        buf = conn.buffer
        status, body = self.probes[buf.path]()
        keep = buf.keep_alive and self.alive
        try:
            conn.sock.send(response_bytes(status, body, uuid.uuid4().hex, close=not keep))
        except OSError:
            keep = False
        if not keep:
            return self._drop(conn)
        self._release(conn)
        conn.reset(buf.leftover)
        if conn.buffer.state != "reading":  # a pipelined request came with the probe
            self._advance(conn, had_head=False)

    def _admit(self, conn: Conn) -> bool:
        """At the end of a head: is there room for this request (a lane slot, room in the body budget)?"""
        buf = conn.buffer
        if buf.method != "POST":
            return True
        body = 0 if buf.state == "oversized" else (buf.content_length or 0)  # oversized bodies are not buffered
        with self._lock:
            return (self.inflight < self.limits["MAX_INFLIGHT"]
                    and self.buffered + body <= self.limits["BODY_BUDGET"])

    def _release(self, conn: Conn) -> None:
        with self._lock:
            self.buffered -= conn.held
            conn.held = 0

    def _dispatch(self, conn: Conn) -> None:
        buf = conn.buffer
        prediction = buf.method == "POST"
        with self._lock:
            self.poller.unregister(conn.sock)
            shed = prediction and self.inflight >= self.limits["MAX_INFLIGHT"]
            self.inflight += prediction and not shed
        if shed:
            return self._reply(conn, 503, "overloaded", retry_after=self.counters.shed(), registered=False)
        conn.passthrough = buf.state == "oversized"
        data = buf.take()
        self._release(conn)
        conn.sock.setblocking(True)
        conn.sock.settimeout(self.limits["IDLE_SECONDS"])  # bounds a client that never reads its answer
        conn.parser = http.RequestParser(self.cfg, BufferedSocket(conn.sock, data, conn.passthrough), conn.client)
        future = (self.tpool if prediction else self.probe_pool).submit(self.handle, conn)
        future.prediction = prediction
        self._wrap_future(future, conn)

    def finish_request(self, fs) -> None:
        """A thread finished: free the lane slot, then keep the connection alive or close it."""
        conn = fs.conn
        if fs.prediction:
            with self._lock:
                self.inflight -= 1
                self.counters.done()
        if fs.cancelled() or fs.exception() is not None or not fs.result()[0] or not self.alive or conn.passthrough:
            return self._drop(conn, registered=False)
        conn.reset(conn.buffer.leftover)
        pipelined = conn.buffer.state != "reading"  # before _watch: after it the loop may dispatch this socket too
        try:
            conn.sock.setblocking(False)
            self._watch(conn)
        except (OSError, ValueError, KeyError):
            return self._drop(conn, registered=False)
        if pipelined:
            self._advance(conn, had_head=False)  # a request arrived whole with the previous one

    def _reply(self, conn: Conn, status: int, code: str, retry_after: int | None = None,
               registered: bool = True, drain: bool = False) -> None:
        """Answer from the loop itself (shedding, deadlines, malformed heads), then close."""
        request_id = uuid.uuid4().hex
        with contextlib.suppress(OSError):
            conn.sock.send(error_bytes(status, code, request_id, retry_after))  # small: fits the send buffer
        # One line per answer would cost the CPU that shedding is there to save: count, and summarize in sweep().
        self.log.debug('"%s %s" %s %s rid=%s', conn.buffer.method or "-", conn.buffer.path or "-", status, code,
                       request_id)
        self.counters.answer(code)
        if getattr(self, "audit_loop", None):
            self.audit_loop(conn.buffer.method, conn.buffer.path, status, request_id)
        self._release(conn)
        if drain:
            conn.draining_until = time.monotonic() + DRAIN_SECONDS
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            if not registered:
                self._watch(conn)
            return
        self._drop(conn, registered)

    def _drop(self, conn: Conn, registered: bool = True) -> None:
        with self._lock:
            if registered:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)
            if conn in self.conns:
                self.conns.discard(conn)
                self.nr_conns -= 1
        self._release(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def sweep(self, closing: bool) -> None:
        """Enforce the deadlines on connections the loop is watching; when closing, drop idle ones."""
        now = time.monotonic()
        if summary := self.counters.tick(now):
            self.log.warning(summary)
        with self._lock:
            watched = [c for c in self.conns if c.sock.fileno() != -1 and c.sock in self.poller.get_map()]
        for conn in watched:
            why = conn.expired(now, 0.0 if closing else self.cfg.keepalive)
            if why in ("idle", "drained"):
                self._drop(conn)
            elif why:
                self._reply(conn, 408, "request_timeout")

    def run(self) -> None:
        """The event loop; on SIGTERM stop accepting, finish accepted requests within graceful_timeout."""
        for listener in self.sockets:
            listener.setblocking(False)
            if hasattr(socket, "TCP_DEFER_ACCEPT") and listener.family in (socket.AF_INET, socket.AF_INET6):
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
            self.poller.register(listener, selectors.EVENT_READ, partial(self.accept, listener.getsockname()))
        deadline = None
        while True:
            self.notify()
            if not self.alive and deadline is None:
                deadline = time.monotonic() + self.cfg.graceful_timeout
                for listener in self.sockets:
                    self.poller.unregister(listener)
                    # Connections the kernel already accepted for us are requests in flight: serve them.
                    while self.accept_one(listener.getsockname(), listener):
                        pass
                    listener.close()
            # New connections first: that is where health probes arrive.
            for key, _ in sorted(self.poller.select(0.25), key=lambda event: event[0].fileobj not in self.sockets):
                key.data(key.fileobj)
            self.futures = type(self.futures)(f for f in self.futures if not f.done())
            self.sweep(closing=deadline is not None)
            if deadline is not None and (not self.conns or time.monotonic() > deadline):
                break
            if not self.is_parent_alive():
                break
        for pool in (self.tpool, self.probe_pool):
            pool.shutdown(wait=False)
        futures.wait(self.futures, timeout=max(0.0, (deadline or time.monotonic()) - time.monotonic()))
        self.poller.close()
