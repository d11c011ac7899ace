"""The worker's accept step: every waiting connection in one turn, health probes answered before the rest."""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time

import pytest

from slimserve import config as settings
from slimserve.wire import LoopCounters
from slimserve.worker import ACCEPT_BATCH, BufferingWorker

HEALTH = b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
PREDICT = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 3\r\n\r\nabc"


def loop_only_worker(handled: list[str]) -> BufferingWorker:
    """The worker's event-loop state without gunicorn around it; no lane slot free, so every POST is shed."""
    worker = object.__new__(BufferingWorker)
    env = settings.from_env({})
    worker.limits = {key: env[key] for key in settings.WORKER_SETTINGS} | {"MAX_INFLIGHT": 0,
                                                                          "MAX_BUFFERED_BODY": 1 << 20}
    worker.inflight = worker.buffered = worker.nr_conns = 0
    worker.conns, worker.counters = set(), LoopCounters()
    worker.worker_connections, worker.alive, worker.audit_loop = 1000, True, None
    worker._lock, worker.poller, worker.log = threading.RLock(), selectors.DefaultSelector(), logging.getLogger("t")
    worker.probes = {"/health": lambda: (handled.append("probe") or 200, b'{"status":"ok"}')}
    reply = worker._reply
    worker._reply = lambda conn, status, *a, **k: (handled.append(str(status)), reply(conn, status, *a, **k))[1]
    return worker


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0), backlog=128) as sock:
        sock.setblocking(False)
        yield sock


def send(port: int, data: bytes) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(data)
    return client


def test_one_turn_takes_every_waiting_connection_and_answers_the_probe_first(listener):
    handled: list[str] = []
    worker = loop_only_worker(handled)
    port = listener.getsockname()[1]
    clients = [send(port, PREDICT) for _ in range(5)] + [send(port, HEALTH)]  # the probe arrives last
    time.sleep(0.2)  # every request is in the kernel's queues before the loop looks
    assert worker.accept(("127.0.0.1", port), listener) is True
    assert handled == ["probe", "503", "503", "503", "503", "503"]
    assert clients[-1].recv(4096).startswith(b"HTTP/1.1 200")
    assert all(c.recv(4096).startswith(b"HTTP/1.1 503") for c in clients[:-1])
    assert worker.accept(("127.0.0.1", port), listener) is False  # nothing left waiting
    for client in clients:
        client.close()


def answered(client: socket.socket) -> bool:
    """Whether the server has answered this client yet (waits briefly)."""
    client.settimeout(0.2)
    try:
        return client.recv(4096, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
    except TimeoutError:
        return False


def test_a_turn_accepts_at_most_a_batch(listener):
    worker = loop_only_worker([])
    port = listener.getsockname()[1]
    clients = [send(port, HEALTH) for _ in range(ACCEPT_BATCH + 3)]
    time.sleep(0.2)
    worker.accept(("127.0.0.1", port), listener)
    assert sum(map(answered, clients)) == ACCEPT_BATCH  # a turn stays bounded however many are waiting
    worker.accept(("127.0.0.1", port), listener)
    assert all(map(answered, clients))  # the rest on the next turn
    for client in clients:
        client.close()


class Finished:
    """A request thread's future that completed and asks to keep the connection open."""

    def __init__(self, conn) -> None:
        self.conn, self.prediction = conn, False

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def result(self) -> tuple[bool]:
        return (True,)


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_kept_alive_connection_is_dispatched_once_even_when_the_loop_reads_it_first(pipelined):
    # The pool thread re-registers the socket (_watch); from then on the loop thread may read the next request
    # and dispatch it. If the thread looked at the buffer only after _watch, it dispatched that request as well.
    from slimserve.wire import Conn

    worker = loop_only_worker([])
    dispatched: list[str] = []
    worker._advance = lambda conn, had_head: dispatched.append("thread")
    server, client = socket.socketpair()
    with server, client:
        conn = Conn(server, ("127.0.0.1", 1), ("127.0.0.1", 2), worker.limits)
        # The answered request; with `pipelined`, the next one came in the same packet.
        conn.buffer.feed(HEALTH + HEALTH if pipelined else HEALTH)

        def watch_and_let_the_loop_win(watched) -> None:
            if not pipelined:  # the loop thread reads the next request at once and dispatches it itself
                watched.buffer.feed(HEALTH)
                dispatched.append("loop")

        worker._watch = watch_and_let_the_loop_win
        worker.finish_request(Finished(conn))
    assert dispatched == (["thread"] if pipelined else ["loop"])
