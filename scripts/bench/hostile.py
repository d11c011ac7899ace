"""Hostile clients for the reliability benchmark: a corpus generated in memory, raw requests, slow sockets."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import multiprocessing
import queue
import random
import select
import socket
import struct
import threading
import time
import uuid
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from scripts.bench.client import HOST, Upload

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type → samples per pixel
TABULAR = "/models/heart_failure/invocations"
# Clients honour Retry-After (the server asks for 1-30 s): without it a shed client re-sends at once and the
# flood of refusals, not the predictions, takes the CPU (seen against the shedding worker: 3,400 503s in 15 s
# at c=8). A client's wait ends early when its run's time is up, so runs stay bounded.
RETRY_CAP = 30.0


@dataclass(frozen=True)
class Case:
    """One hostile request: where it goes, what it carries and what its file declares."""

    name: str
    group: str
    path: str
    body: bytes
    content_type: str
    declared_length: int | None = None  # a Content-Length other than len(body): the lying client
    copies: int = 1  # sent this many times at once
    declares: dict[str, Any] = field(default_factory=dict)  # width/height/mode the file claims (for tests)


@dataclass(frozen=True)
class Outcome:
    """What came back: an HTTP status, or "no answer" / "connection closed" / "refused", and the wall time."""

    status: int | str
    ms: float
    retry_after: str | None = None
    body: bytes = b""


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, extra: Iterable[bytes] = (),
        trailer: bytes = b"") -> bytes:
    """An all-zero PNG built row by row (never the whole raw image in memory): tiny file, huge decode."""
    row = b"\0" * (1 + (width * _CHANNELS[color_type] * bit_depth + 7) // 8)  # filter byte + samples
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    plte = chunk(b"PLTE", bytes(range(256)) * 3) if color_type == 3 else b""
    return PNG_SIGNATURE + head + plte + b"".join(extra) + chunk(b"IDAT", idat) + chunk(b"IEND", b"") + trailer


def pillow_bytes(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """An image saved with Pillow, as bytes."""
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def noise(mode: str, size: tuple[int, int], seed: int = 7) -> Image.Image:
    """A deterministic noise image (compresses like a photo, unlike a flat one)."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def jpeg_promising(width: int, height: int) -> bytes:
    """A ~2 KB JPEG whose SOF header is patched to promise width × height."""
    data = bytearray(pillow_bytes(noise("L", (48, 48)), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def zip_bytes() -> bytes:
    """A small zip archive (the second half of a polyglot)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>" * 20)
    return out.getvalue()


def form(parts: list[tuple[str, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of (part headers, part data) and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n" for head, data in parts)
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def file_part(data: bytes, name: str = "x.png", extra: str = "") -> tuple[str, bytes]:
    """The `file` field of an upload form."""
    return f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n{extra}Content-Type: image/png', data


def image_case(name: str, group: str, data: bytes, declares: dict | None = None, copies: int = 1) -> Case:
    """POST /predict with `data` as the uploaded file."""
    body, ctype = form([file_part(data)])
    return Case(name, group, "/predict", body, ctype, copies=copies, declares={**(declares or {}), "bytes": len(data)})


def split_text(columns: list[str], row_text: str) -> bytes:
    """A dataframe_split body whose one row is given as raw JSON text (to carry NaN, 1e400, …)."""
    names = ",".join(f'"{c}"' for c in columns)
    return f'{{"dataframe_split": {{"columns": [{names}], "data": [{row_text}]}}}}'.encode()


def image_cases() -> list[Case]:
    """The issue's image probes, bombs, polyglots and unusual modes, sent to POST /predict."""
    small = pillow_bytes(noise("RGB", (256, 256)), "JPEG", quality=85)
    frames = [noise("RGB", (256, 256), seed) for seed in range(3)]
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    return [
        image_case("png16_4000x4000", "probe", png(4000, 4000, 16), {"size": (4000, 4000), "mode": "I;16"}),
        image_case("png16_2500x2500", "probe", png(2500, 2500, 16), {"size": (2500, 2500), "mode": "I;16"}),
        image_case("png16_2500x2500_two_at_once", "probe", png(2500, 2500, 16), copies=2),
        image_case("png_rgba_6300x6300", "probe", png(6300, 6300, 8, 6), {"size": (6300, 6300), "mode": "RGBA"}),
        image_case("png_200k_text_chunks", "probe",
                   png(64, 64, extra=[chunk(b"tEXt", b"c\0%04d" % (i % 10_000)) for i in range(200_000)]),
                   {"size": (64, 64), "mode": "L"}),
        image_case("bomb_png_20000x20000_gray", "bomb", png(20_000, 20_000), {"size": (20_000, 20_000), "mode": "L"}),
        image_case("bomb_png_6000x6000_rgb", "bomb", png(6000, 6000, 8, 2), {"size": (6000, 6000), "mode": "RGB"}),
        image_case("jpeg_header_10000x10000_2kb", "bomb", jpeg_promising(10_000, 10_000),
                   {"size": (10_000, 10_000), "mode": "L"}),
        image_case("polyglot_jpeg_zip", "polyglot", small + zip_bytes(), {"size": (256, 256), "mode": "RGB"}),
        image_case("polyglot_png_html", "polyglot",
                   png(64, 64, extra=[chunk(b"tEXt", b"Comment\0" + html)], trailer=html),
                   {"size": (64, 64), "mode": "L"}),
        image_case("jpeg_cmyk", "mode", pillow_bytes(noise("CMYK", (512, 512)), "JPEG"),
                   {"size": (512, 512), "mode": "CMYK"}),
        image_case("png16_512", "mode", png(512, 512, 16), {"size": (512, 512), "mode": "I;16"}),
        image_case("png_palette_512", "mode", png(512, 512, 8, 3), {"size": (512, 512), "mode": "P"}),
        image_case("png_animated_3_frames", "mode",
                   pillow_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]),
                   {"size": (256, 256), "mode": "RGB", "n_frames": 3}),
    ]


def multipart_cases() -> list[Case]:
    """Multipart abuse on POST /predict: many parts, huge part headers, no boundary, nested multipart."""
    jpeg = pillow_bytes(noise("RGB", (256, 256)), "JPEG", quality=85)
    many, many_type = form([(f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(1000)]
                           + [file_part(jpeg, "x.jpg")])
    huge, huge_type = form([file_part(jpeg, "x" * 65_536 + ".jpg", "X-Pad: " + "a" * 1_000_000 + "\r\n")])
    plain, plain_type = form([file_part(jpeg, "x.jpg")])
    inner, _ = form([file_part(jpeg, "x.jpg")], boundary="inner")
    nested, nested_type = form([('Content-Disposition: form-data; name="file"\r\n'
                                 "Content-Type: multipart/mixed; boundary=inner", inner)])
    return [
        Case("multipart_1000_parts", "multipart", "/predict", many, many_type),
        Case("multipart_1mb_part_header", "multipart", "/predict", huge, huge_type),
        Case("multipart_no_boundary", "multipart", "/predict", plain, "multipart/form-data"),
        Case("multipart_nested", "multipart", "/predict", nested, nested_type),
        Case("content_length_larger_than_body", "probe", "/predict", plain, plain_type,
             declared_length=len(plain) + 100_000),
    ]


def tabular_cases(columns: list[str], row: list[Any]) -> list[Case]:
    """Oversized, deep and non-finite bodies for a tabular model's /invocations, around one valid row."""
    numeric = next(i for i, v in enumerate(row) if isinstance(v, int | float) and not isinstance(v, bool))

    def with_cell(text: str) -> bytes:
        cells = [text if i == numeric else json.dumps(v) for i, v in enumerate(row)]
        return split_text(columns, "[" + ",".join(cells) + "]")

    json_type, csv_type = "application/json", "text/csv"
    return [
        Case("json_10mb_3.4m_empty_objects", "probe", TABULAR,
             b'{"dataframe_records": [' + b",".join([b"{}"] * 3_400_000) + b"]}", json_type),
        Case("csv_10mb_5.2m_rows", "probe", TABULAR, (",".join(columns) + "\n").encode() + b"1\n" * 5_200_000,
             csv_type),
        Case("json_100k_nested_arrays", "json", TABULAR, split_text(columns, "[" * 100_000 + "]" * 100_000),
             json_type),
        Case("json_nan_literal", "json", TABULAR, with_cell("NaN"), json_type),
        Case("json_infinity_literal", "json", TABULAR, with_cell("Infinity"), json_type),
        Case("json_1e400", "json", TABULAR, with_cell("1e400"), json_type),
        Case("json_400_digit_integer", "json", TABULAR, with_cell("9" * 400), json_type),
    ]


def corpus(columns: list[str], row: list[Any]) -> list[Case]:
    """Every hostile case, images first; the tabular ones built around one valid row of a tabular model."""
    return [*image_cases(), *multipart_cases(), *tabular_cases(columns, row)]


def exchange(port: int, method: str, path: str, body: bytes = b"", content_type: str | None = None,
             timeout: float = 20.0, declared_length: int | None = None, keep: int = 300) -> Outcome:
    """One request on a fresh loopback connection, sent raw (it may lie); the first `keep` bytes of the answer."""
    started = time.perf_counter()
    elapsed = lambda: (time.perf_counter() - started) * 1000  # noqa: E731
    try:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    except ConnectionRefusedError:
        return Outcome("refused", elapsed())
    except OSError:
        return Outcome("no connection", elapsed())
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or declared_length is not None or method == "POST":
        head += f"Content-Length: {len(body) if declared_length is None else declared_length}\r\n"
    try:
        # The server may answer (413) and close before reading it all: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head.encode() + b"\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
        return Outcome(response.status, elapsed(), response.getheader("Retry-After"), data[:keep])
    except TimeoutError:
        return Outcome("no answer", elapsed())
    except (OSError, http.client.HTTPException):
        return Outcome("connection closed", elapsed())
    finally:
        sock.close()


def loop(port: int, method: str, path: str, upload: Upload | None, stop: threading.Event, pause: float,
         timeout: float, out: list[Outcome], limit: int = 20_000) -> None:
    """Requests one after another until `stop` (at most `limit`), appending every outcome to `out`."""
    for _ in range(limit):
        if stop.is_set():
            return
        body, ctype = (upload.body, upload.content_type) if upload else (b"", None)
        out.append(outcome := exchange(port, method, path, body, ctype, timeout))
        if outcome.status in ("refused", "no connection"):
            return
        stop.wait(pause if outcome.status not in (429, 503) else retry_pause(outcome.retry_after))


def retry_pause(retry_after: str | None, cap: float = RETRY_CAP) -> float:
    """How long a polite client waits after a 429/503: its Retry-After (seconds), at most `cap`."""
    try:
        return max(0.0, min(float(retry_after or 0), cap))
    except ValueError:
        return 0.0


def with_background(port: int, jobs: list[tuple[str, str, Upload | None, float, float]],
                    main: Callable[[], None]) -> dict[str, list[Outcome]]:
    """Run `main` while client loops (name, path, upload, pause, timeout) run beside it; their outcomes."""
    stop, found = threading.Event(), {name: [] for name, *_ in jobs}
    threads = [threading.Thread(target=loop, daemon=True, args=(port, "POST" if upload else "GET", path, upload,
                                                                  stop, pause, timeout, found[name]))
               for name, path, upload, pause, timeout in jobs]
    for thread in threads:
        thread.start()
    try:
        main()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=35)
    return found


def _job_group(port: int, jobs: list, stop, results) -> None:
    """In a child process: run `jobs` as threads until `stop`, then send their outcomes back."""
    found = with_background(port, jobs, lambda: stop.wait())
    results.put(found)


def with_processes(port: int, groups: list[list[tuple[str, str, Upload | None, float, float]]],
                   main: Callable[[], None]) -> dict[str, list[Outcome]]:
    """`with_background`, each group of jobs in a process of its own.

    One client process with 129 threads measures its own GIL queue as much as the server: the /health poller
    gets a process to itself, and the load is spread over a few, so latencies are the server's.
    """
    context = multiprocessing.get_context("fork")
    stop, results = context.Event(), context.Queue()
    children = [context.Process(target=_job_group, args=(port, jobs, stop, results), daemon=True)
                for jobs in groups if jobs]
    for child in children:
        child.start()
    found: dict[str, list[Outcome]] = {}
    try:
        main()
    finally:
        stop.set()
        for _ in children:
            with contextlib.suppress(queue.Empty):
                found.update(results.get(timeout=60))
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    return found


def hold_slow(port: int, mode: str, upload: Upload, connections: int, seconds: float) -> dict:
    """Hold `connections` sockets: "headers" trickles a request at 1 byte/s, "short_body" sends a body shorter
    than its Content-Length and waits. Returns when each was dropped by the server (s) and what it answered."""
    if mode == "headers":
        payload = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 2000
    else:
        payload = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {upload.content_type}\r\n"
                   f"Content-Length: {len(upload.body) + 100_000}\r\n\r\n").encode() + upload.body[:1000]
    began, sockets, dropped, answers = time.monotonic(), [], {}, Counter()
    try:
        for _ in range(connections):
            with contextlib.suppress(OSError):
                sock = socket.create_connection((HOST, port), timeout=2)
                sock.setblocking(False)
                sock.send(payload[:1] if mode == "headers" else payload)
                sockets.append(sock)
        for tick in range(1, int(seconds) + 1):
            time.sleep(max(0.0, began + tick - time.monotonic()))
            alive = [s for s in sockets if s not in dropped]
            readable = set(select.select(alive, [], [], 0)[0]) if alive else set()
            for sock in alive:
                try:
                    data = sock.recv(4096) if sock in readable else None
                    if data == b"":
                        raise ConnectionResetError
                    if data:
                        answers[data.split(b"\r\n", 1)[0].decode(errors="replace")[:60]] += 1
                    elif mode == "headers" and tick < len(payload):
                        sock.send(payload[tick:tick + 1])
                except BlockingIOError:
                    continue
                except OSError:
                    dropped[sock] = round(time.monotonic() - began, 1)
    finally:
        for sock in sockets:
            sock.close()
    return {"connected": len(sockets), "dropped": list(dropped.values()), "answers": dict(answers)}
