"""A bounded loopback HTTP client: raw requests (which may lie), sample uploads, sequential and concurrent load."""

from __future__ import annotations

import contextlib
import functools
import http.client
import multiprocessing
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HOST = "127.0.0.1"  # the benchmarks never send traffic anywhere else
_INFERENCE_MS = re.compile(rb'"inference_ms":\s*([0-9.]+)')


class Upload(NamedTuple):
    """A request body, its Content-Type, a name for reports and extra headers (e.g. an API key)."""

    body: bytes
    content_type: str
    name: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class Outcome(NamedTuple):
    """An HTTP status (or "no answer", "connection closed", "refused", "no connection") and the wall time."""

    status: int | str
    ms: float
    retry_after: str | None = None
    body: bytes = b""
    inference_ms: float | None = None  # the server's own figure, when the answer carries one


class Job(NamedTuple):
    """One client: requests to `path` cycling `uploads` (a GET without any), `pause` s apart, at most `count`."""

    name: str
    path: str
    uploads: tuple[Upload, ...] = ()
    pause: float = 0.0
    timeout: float = 30.0
    count: int = 20_000


def form(parts: list[tuple[str, bytes]], boundary: str = "", name: str = "") -> Upload:
    """A multipart/form-data body of (part headers, part data)."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n" for head, data in parts)
    return Upload(body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}", name)


def file_part(data: bytes, name: str = "x.png", kind: str = "image/png", extra: str = "") -> tuple[str, bytes]:
    """The `file` field of an upload form."""
    return f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n{extra}Content-Type: {kind}', data


def load_samples(folder: Path) -> list[Upload]:
    """Every JPEG in `folder` as an upload form, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg"})
    return [form([file_part(p.read_bytes(), p.name, "image/jpeg")], name=p.name) for p in files]


def exchange(port: int, method: str, path: str, upload: Upload | None = None, timeout: float = 20.0,
             declared_length: int | None = None, keep: int = 300) -> Outcome:
    """One request on a fresh loopback connection, sent raw (its Content-Length may lie); never raises."""
    started = time.perf_counter()
    elapsed = lambda: (time.perf_counter() - started) * 1000  # noqa: E731
    try:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    except OSError as exc:
        return Outcome("refused" if isinstance(exc, ConnectionRefusedError) else "no connection", elapsed())
    length = declared_length if declared_length is not None else len(upload.body) if upload else 0
    headers = (("Content-Type", upload.content_type), *upload.headers, ("Content-Length", length)) if upload else ()
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # an early 413: read what it said
            sock.sendall(head.encode() + b"\r\n" + (upload.body if upload else b""))
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        found = _INFERENCE_MS.search(data)
        return Outcome(response.status, elapsed(), response.getheader("Retry-After"), data[:keep],
                       float(found.group(1)) if found else None)
    except TimeoutError:
        return Outcome("no answer", elapsed())
    except (OSError, http.client.HTTPException):
        return Outcome("connection closed", elapsed())
    finally:
        sock.close()


def retry_pause(retry_after: str | None, cap: float = 30.0) -> float:
    """How long a polite client waits after a 429/503: its Retry-After (seconds), at most the server's 30."""
    try:
        return max(0.0, min(float(retry_after or 0), cap))
    except ValueError:
        return 0.0


def statuses(outcomes: list[Outcome]) -> dict[str, int]:
    """How many outcomes had each status."""
    return dict(sorted(Counter(str(o.status) for o in outcomes).items()))


def loop(port: int, job: Job, stop: threading.Event, out: list[Outcome]) -> None:
    """One job's requests back to back until `stop` or `job.count`, each outcome appended to `out`."""
    for i in range(job.count):
        upload = job.uploads[i % len(job.uploads)] if job.uploads else None
        out.append(outcome := exchange(port, "POST" if upload else "GET", job.path, upload, job.timeout))
        # Without honouring Retry-After a shed client re-sends at once, and the refusals take the CPU.
        pause = retry_pause(outcome.retry_after) if outcome.status in (429, 503) else job.pause
        if outcome.status in ("refused", "no connection") or stop.wait(pause):
            return


def background(port: int, jobs: list[Job], main: Callable[[], object] | None = None,
               seconds: float = 300.0) -> dict[str, list[Outcome]]:
    """Run the jobs as threads while `main` runs (without `main`: until they finish, at most `seconds`)."""
    stop, found = threading.Event(), {job.name: [] for job in jobs}
    threads = [threading.Thread(target=loop, args=(port, job, stop, found[job.name]), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    try:
        if main:
            main()
        while not main and any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=65)
    return found


def in_processes(port: int, groups: list[list[Job]], seconds: float) -> dict[str, list[Outcome]]:
    """`background` for `seconds`, each group of jobs in a process of its own (129 threads in one would measure its
    GIL). The workers end by the pool's sentinel, not its SIGTERM: one that met the SIGTERM handler inherited from
    `start_report` could stay blocked in the queue's lock and the pool's exit wait for it forever. Should the pool
    still terminate them (a job raised), their SIGTERM is the default and ends them."""
    with multiprocessing.get_context("fork").Pool(len(groups), signal.signal, (signal.SIGTERM, signal.SIG_DFL)) as pool:
        found = pool.starmap(background, [(port, jobs, functools.partial(time.sleep, seconds)) for jobs in groups])
        pool.close()
        pool.join()
    return {name: outcomes for part in found for name, outcomes in part.items()}
