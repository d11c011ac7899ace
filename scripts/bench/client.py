"""A bounded HTTP client for the benchmark: loopback only, one fresh connection per request."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.measure import summarize_ms

HOST = "127.0.0.1"  # the benchmark never sends traffic anywhere else
RETRY_PAUSE = 0.05


@dataclass(frozen=True)
class Upload:
    """One sample image as a ready-made multipart body."""

    name: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Reply:
    """Status, body and client-side duration of one request."""

    status: int
    body: bytes
    ms: float


def multipart(name: str, data: bytes) -> Upload:
    """A multipart/form-data body with the image in the `file` field."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return Upload(name, head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


def load_samples(folder: Path) -> list[Upload]:
    """Every JPEG in `folder`, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg"})
    if not files:
        raise SystemExit(f"no JPEG samples in {folder}")
    return [multipart(p.name, p.read_bytes()) for p in files]


def call(port: int, method: str, path: str, upload: Upload | None = None, timeout: float = 30.0) -> Reply:
    """One request on a fresh connection to 127.0.0.1:port."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    started = time.perf_counter()
    try:
        headers = {"Content-Type": upload.content_type} if upload else {}
        conn.request(method, path, body=upload.body if upload else None, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return Reply(response.status, body, (time.perf_counter() - started) * 1000)
    finally:
        conn.close()


def first_200(port: int, method: str, path: str, upload: Upload | None, deadline: float,
              stop: Callable[[], str | None]) -> tuple[float | None, str]:
    """Retry until a 200, the deadline or `stop()` naming a reason; returns (monotonic time or None, what we saw)."""
    seen = "no answer"
    for _ in range(100_000):
        reason = stop()
        if reason:
            return None, reason
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, f"timeout ({seen})"
        try:
            reply = call(port, method, path, upload, timeout=min(remaining, 60.0))
        except ConnectionRefusedError:
            seen = "connection refused"
            time.sleep(RETRY_PAUSE)
            continue
        except (OSError, http.client.HTTPException) as exc:
            seen = f"{type(exc).__name__}: {exc}"
            time.sleep(RETRY_PAUSE)
            continue
        if reply.status == 200:
            return time.monotonic(), "ok"
        seen = f"HTTP {reply.status} {reply.body[:120].decode(errors='replace')}"
        time.sleep(RETRY_PAUSE * 4)
    return None, f"gave up ({seen})"


def timed_posts(port: int, path: str, uploads: list[Upload], count: int, deadline: float,
                pause: float = 0.0) -> tuple[list[float], list[float], dict[str, int]]:
    """`count` POSTs one after another (`pause` s apart), cycling `uploads`: client ms, inference_ms, errors."""
    client_ms: list[float] = []
    inference_ms: list[float] = []
    errors: dict[str, int] = {}
    for i in range(count):
        if time.monotonic() > deadline:
            errors["deadline"] = count - i
            break
        if pause and i:
            time.sleep(pause)
        try:
            reply = call(port, "POST", path, uploads[i % len(uploads)], timeout=60.0)
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        if reply.status != 200:
            key = f"HTTP {reply.status} {reply.body[:80].decode(errors='replace')}"
            errors[key] = errors.get(key, 0) + 1
            continue
        client_ms.append(reply.ms)
        if b'"inference_ms"' in reply.body:
            server_ms = json.loads(reply.body).get("inference_ms")
            if isinstance(server_ms, int | float):
                inference_ms.append(float(server_ms))
    return client_ms, inference_ms, errors


def sequential(port: int, uploads: list[Upload], count: int, deadline: float, pause: float = 0.0) -> dict:
    """`count` POST /predict one after another (`pause` s apart), cycling the samples; client and server latency."""
    client_ms, inference_ms, errors = timed_posts(port, "/predict", uploads, count, deadline, pause)
    return {"client_ms": summarize_ms(client_ms), "server_inference_ms": summarize_ms(inference_ms),
            "errors": errors}


def concurrent(port: int, uploads: list[Upload], threads: int, per_thread: int, deadline: float) -> dict:
    """`threads` clients each sending `per_thread` requests back to back; completed requests per second."""
    lock = threading.Lock()
    client_ms: list[float] = []
    errors: dict[str, int] = {}

    def worker(offset: int) -> None:
        """One client: `per_thread` requests, starting at sample `offset`."""
        for i in range(per_thread):
            if time.monotonic() > deadline:
                return
            try:
                reply = call(port, "POST", "/predict", uploads[(offset + i) % len(uploads)], timeout=60.0)
                key = None if reply.status == 200 else f"HTTP {reply.status}"
            except (OSError, http.client.HTTPException) as exc:
                reply, key = None, type(exc).__name__
            with lock:
                if key is None and reply is not None:
                    client_ms.append(reply.ms)
                else:
                    errors[key or "?"] = errors.get(key or "?", 0) + 1

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 65)
    elapsed = time.monotonic() - started
    return {"threads": threads, "requests": len(client_ms), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(client_ms) / elapsed, 2) if elapsed else None,
            "client_ms": summarize_ms(client_ms), "errors": errors}
