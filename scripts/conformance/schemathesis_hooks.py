"""Schemathesis hooks: real images for the image media types (SCHEMATHESIS_HOOKS=schemathesis_hooks).

The OpenAPI document can say "a JPEG or PNG image" but not "decodable, at least 28x28"; left alone the
fuzzer sends its 1x1 PNG, which the server rightly refuses (422 image_too_small). These strategies make
spec-valid image bodies real images of an accepted size. Runs in schemathesis' own venv (stdlib only).
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import schemathesis
from hypothesis import strategies as st

# A 64x64 grey baseline JPEG (written by Pillow); the stdlib has no JPEG encoder.
JPEG_64 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCABAAEABAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AOZooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooor/2Q=="
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def grey_png(width: int, height: int, level: int) -> bytes:
    """An 8-bit greyscale PNG with a horizontal gradient starting at `level`."""
    row = b"\x00" + bytes((level + x) % 256 for x in range(width))  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * height))
            + _chunk(b"IEND", b""))


# pneumonia 2.0.0 refuses what is not a chest X-ray (422 not_a_chest_xray), which a schema cannot say either:
# spec-valid image bodies for it are the repository's sample X-ray (as JPEG, and re-encoded as PNG by no
# one: the PNG strategy stays synthetic, for the models that take any image).
XRAY = (Path(__file__).resolve().parents[2] / "tests" / "data" / "sample_xray.jpeg").read_bytes()
PNGS = st.builds(grey_png, st.integers(28, 256), st.integers(28, 256), st.integers(0, 255))
schemathesis.openapi.media_type("image/png", PNGS)
schemathesis.openapi.media_type("image/jpeg", st.sampled_from([XRAY, JPEG_64]))
