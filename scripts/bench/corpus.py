"""Hostile input made in memory (tiny files, huge decodes, floods, lies) and slow clients holding sockets."""

from __future__ import annotations

import contextlib
import io
import json
import random
import select
import socket
import struct
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from scripts.bench.client import HOST, Upload, file_part, form

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
TABULAR = "/models/heart_failure/invocations"


@dataclass(frozen=True)
class Case:
    """One hostile request: where it goes, what it carries and what its file declares."""

    name: str
    group: str
    path: str
    upload: Upload
    declared_length: int | None = None  # a Content-Length other than the body's: the lying client
    copies: int = 1  # sent this many times at once
    declares: dict[str, Any] = field(default_factory=dict)  # size/mode/bytes the file claims (for the tests)


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, extra: Iterable[bytes] = (),
        trailer: bytes = b"") -> bytes:
    """An all-zero PNG compressed row by row (never the raw image in memory): tiny file, huge decode."""
    row = b"\0" * (1 + (width * _CHANNELS[color_type] * bit_depth + 7) // 8)  # filter byte + samples
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    plte = chunk(b"PLTE", bytes(range(256)) * 3) if color_type == 3 else b""
    return PNG_SIGNATURE + head + plte + b"".join(extra) + chunk(b"IDAT", idat) + chunk(b"IEND", b"") + trailer


def saved(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """An image saved by Pillow, as bytes."""
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def noise(mode: str, size: tuple[int, int], seed: int = 7) -> Image.Image:
    """A deterministic noise image (compresses like a photo, unlike a flat one)."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def jpeg_promising(width: int, height: int) -> bytes:
    """A ~2 KB JPEG whose SOF header is patched to promise width x height."""
    data = bytearray(saved(noise("L", (48, 48)), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def corpus(columns: list[str], row: list[Any]) -> list[Case]:
    """Every hostile case: the issue's image probes, bombs, polyglots and unusual modes, each POSTed to /predict as a
    file, and multipart abuse; then the tabular ones, built around one valid row of a tabular model."""
    photo, archive = saved(noise("RGB", (256, 256)), "JPEG", quality=85), io.BytesIO()
    with zipfile.ZipFile(archive, "w") as files:  # the second half of a polyglot
        files.writestr("payload.html", "<script>alert(1)</script>" * 20)
    frames = [noise("RGB", (256, 256), seed) for seed in range(3)]
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    texts = [chunk(b"tEXt", b"c\0%04d" % (i % 10_000)) for i in range(200_000)]
    table = [  # name, group, file, (width, height, mode[, frames]) it declares, copies
        ("png16_4000x4000", "probe", png(4000, 4000, 16), (4000, 4000, "I;16"), 1),
        ("png16_2500x2500", "probe", png(2500, 2500, 16), (2500, 2500, "I;16"), 1),
        ("png16_2500x2500_two_at_once", "probe", png(2500, 2500, 16), (2500, 2500, "I;16"), 2),
        ("png_rgba_6300x6300", "probe", png(6300, 6300, 8, 6), (6300, 6300, "RGBA"), 1),
        ("png_200k_text_chunks", "probe", png(64, 64, extra=texts), (64, 64, "L"), 1),
        ("bomb_png_20000x20000_gray", "bomb", png(20_000, 20_000), (20_000, 20_000, "L"), 1),
        ("bomb_png_6000x6000_rgb", "bomb", png(6000, 6000, 8, 2), (6000, 6000, "RGB"), 1),
        ("jpeg_header_10000x10000_2kb", "bomb", jpeg_promising(10_000, 10_000), (10_000, 10_000, "L"), 1),
        ("polyglot_jpeg_zip", "polyglot", photo + archive.getvalue(), (256, 256, "RGB"), 1),
        ("polyglot_png_html", "polyglot", png(64, 64, extra=[chunk(b"tEXt", b"Comment\0" + html)], trailer=html),
         (64, 64, "L"), 1),
        ("jpeg_cmyk", "mode", saved(noise("CMYK", (512, 512)), "JPEG"), (512, 512, "CMYK"), 1),
        ("png16_512", "mode", png(512, 512, 16), (512, 512, "I;16"), 1),
        ("png_palette_512", "mode", png(512, 512, 8, 3), (512, 512, "P"), 1),
        ("png_animated_3_frames", "mode", saved(frames[0], "PNG", save_all=True, append_images=frames[1:]),
         (256, 256, "RGB", 3), 1),
    ]
    part = file_part(photo, "x.jpg")  # multipart abuse: many parts, a huge part header, no boundary, nested, a lie
    plain, nested = form([part]), form([(
        'Content-Disposition: form-data; name="file"\r\nContent-Type: multipart/mixed; boundary=inner',
        form([part], boundary="inner").body)])
    return [*(Case(name, group, "/predict", form([file_part(data)]), copies=copies, declares={
        "size": d[:2], "mode": d[2], "n_frames": d[3] if len(d) > 3 else 1, "bytes": len(data)})
        for name, group, data, d, copies in table),
        Case("multipart_1000_parts", "multipart", "/predict", form([
            *((f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(1000)), part])),
        Case("multipart_1mb_part_header", "multipart", "/predict", form(
            [file_part(photo, "x" * 65_536 + ".jpg", extra="X-Pad: " + "a" * 1_000_000 + "\r\n")])),
        Case("multipart_no_boundary", "multipart", "/predict", Upload(plain.body, "multipart/form-data")),
        Case("multipart_nested", "multipart", "/predict", nested),
        Case("content_length_larger_than_body", "probe", "/predict", plain, declared_length=len(plain.body) + 100_000),
        *tabular_cases(columns, row)]


def tabular_cases(columns: list[str], row: list[Any]) -> list[Case]:
    """Floods, deep nesting and non-finite numbers for a tabular model's /invocations, around one valid row."""
    numeric = next(i for i, v in enumerate(row) if isinstance(v, int | float) and not isinstance(v, bool))
    names = ",".join(json.dumps(c) for c in columns)

    def split(row_text: str) -> Upload:
        return Upload(f'{{"dataframe_split": {{"columns": [{names}], "data": [{row_text}]}}}}'.encode(),
                      "application/json")

    def with_cell(text: str) -> Upload:
        return split("[" + ",".join(text if i == numeric else json.dumps(v) for i, v in enumerate(row)) + "]")

    records = Upload(b'{"dataframe_records": [' + b",".join([b"{}"] * 3_400_000) + b"]}", "application/json")
    table = Upload((",".join(columns) + "\n").encode() + b"1\n" * 5_200_000, "text/csv")
    return [Case("json_10mb_3.4m_empty_objects", "probe", TABULAR, records),
            Case("csv_10mb_5.2m_rows", "probe", TABULAR, table),
            Case("json_100k_nested_arrays", "json", TABULAR, split("[" * 100_000 + "]" * 100_000)),
            *(Case(name, "json", TABULAR, with_cell(text)) for name, text in (
                ("json_nan_literal", "NaN"), ("json_infinity_literal", "Infinity"), ("json_1e400", "1e400"),
                ("json_400_digit_integer", "9" * 400)))]


def hold_slow(port: int, mode: str, upload: Upload, connections: int, seconds: float) -> dict:
    """Hold sockets: "headers" trickles a request at 1 byte/s, "short_body" sends less than its Content-Length.

    Returns when (s) the server dropped each one, and the first lines of what it answered on them."""
    payload = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 2000 if mode == "headers" else (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {upload.content_type}\r\nContent-Length: "
        f"{len(upload.body) + 100_000}\r\n\r\n").encode() + upload.body[:1000]
    began, sockets, dropped, answers = time.monotonic(), [], {}, Counter()
    with contextlib.ExitStack() as open_sockets:
        for _ in range(connections):
            with contextlib.suppress(OSError):
                sockets.append(sock := open_sockets.enter_context(socket.create_connection((HOST, port), timeout=2)))
                sock.setblocking(False)
                sock.send(payload[:1] if mode == "headers" else payload)
        for tick in range(1, int(seconds) + 1):
            time.sleep(max(0.0, began + tick - time.monotonic()))
            alive = [s for s in sockets if s not in dropped]
            readable = set(select.select(alive, [], [], 0)[0]) if alive else set()
            for sock in alive:
                try:
                    if sock in readable and not (data := sock.recv(4096)):
                        raise ConnectionResetError
                    if sock in readable:
                        answers[data.split(b"\r\n", 1)[0].decode(errors="replace")[:60]] += 1
                    elif mode == "headers" and tick < len(payload):
                        sock.send(payload[tick:tick + 1])
                except BlockingIOError:
                    continue
                except OSError:
                    dropped[sock] = round(time.monotonic() - began, 1)
    return {"connected": len(sockets), "dropped": list(dropped.values()), "answers": dict(answers)}
