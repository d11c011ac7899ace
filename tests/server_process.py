"""Run the real gunicorn server on loopback for end-to-end tests, and speak HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """gunicorn with scripts/deploy/gunicorn.conf.py, started from the repo root, stopped on exit."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        full_env = {**os.environ, **env, "PORT": str(self.port)}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.process = subprocess.Popen([str(gunicorn), "-c", "scripts/deploy/gunicorn.conf.py",
                                         "--bind", f"127.0.0.1:{self.port}"], cwd=REPO, env=full_env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Drain the log as it is written: an unread pipe fills at 64 KB and then blocks the server's writes
        # (access log, audit records), stalling requests the way no real log collector would.
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> str:
        """Terminate gunicorn and return its log."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=10)
        if not self.reader.is_alive():
            self.process.stdout.close()
        return "".join(self.lines)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
        """One HTTP request; returns status, JSON body and headers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}, dict(response.getheaders())
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll /ready until 200; fail with the server log if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("server exited:\n" + self.stop())
            try:
                if self.request("GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("server not ready in time:\n" + self.stop())

    def pids(self) -> list[int]:
        """The master and its worker processes."""
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [master, *map(int, children)]


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body with one file part, as curl -F builds it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def all_at_once(port: int, request: bytes, count: int = 16) -> list[bytes]:
    """Send `request` on `count` connections before reading any answer; every whole answer, in order."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    for sock in socks:
        sock.sendall(request)
    answers = []
    for sock in socks:
        with sock:
            answers.append(b"".join(iter(lambda s=sock: s.recv(65536), b"")))
    return answers
