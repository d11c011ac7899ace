"""Cheap checks on an upload's bytes before any decoding: the PNG chunk list, the JPEG marker list, and
the working memory that decoding and preprocessing would need.

Pillow parses PNG chunks and JPEG markers in Python (200k text chunks cost 11 s of CPU at 0.1 vCPU) and
allocates the whole image before it finds out the data is missing, so these walks run first and stop at
the first problem. Every refusal is a client error, raised with `field="file"`.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import NamedTuple

from slimserve.errors import PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType

# Metadata beside the pixels (text, ICC profile, EXIF, XMP): an X-ray carries a few chunks of a few KB; a
# camera JPEG up to ~10 segments and a ~0.5 MB ICC profile. Far above both, far below a flood.
MAX_ANCILLARY_CHUNKS = 64
MAX_ANCILLARY_BYTES = 1024 * 1024
# IDAT chunks: libpng writes 8 KB, Pillow 64 KB, so a 10 MB upload holds ~1,300; zero-length ones
# would only make every parser loop.
MAX_PNG_CHUNKS = 10_000
# JPEG segments before the first scan (DQT, DHT, SOF, APPn, …): a normal file has under 20.
MAX_JPEG_HEADER_SEGMENTS = 256
# Each progressive scan makes libjpeg walk the whole coefficient buffer; libjpeg-turbo's djpeg suggests
# -maxscans 100 against scan floods (a normal progressive file has about 10).
MAX_JPEG_SCANS = 100
# libjpeg keeps a whole-image buffer of 64 two-byte coefficients per 8×8 block for progressive and
# multi-scan files, whatever the draft scale.
COEFFICIENT_BYTES_PER_BLOCK = 128
# What a decode holds besides the pixels: libjpeg's pools, Pillow's read blocks (peak RSS measured
# ~2 MB above the pixel copies for a draft-decoded JPEG and for a 3000×3000 16-bit PNG).
DECODER_OVERHEAD_BYTES = 4 * 1024 * 1024
# Rows of 16-bit pixels converted to 8 bits at a time (see imaging._sixteen_to_eight).
STRIP_ROWS = 64
# Pillow stores every mode not listed here with 4 bytes per pixel (RGB, RGBA, LA, CMYK, I, F, …).
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# Modes Pillow converts to L or RGB in one step; others (CMYK → L, …) go through an RGB copy.
_ONE_STEP_MODES = {"1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "YCbCr", "I", "I;16"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = {b"eXIf", b"tEXt", b"zTXt", b"iTXt"}  # where Pillow looks for an EXIF orientation
_JPEG_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_JPEG_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_FILL_RUN = re.compile(rb"\xff{16,}")


class ImageHeader(NamedTuple):
    """What the header promises: dimensions, plus what the working-memory estimate needs."""

    width: int
    height: int
    may_rotate: bool = False  # carries metadata that may hold an EXIF orientation (one more copy)
    coefficient_bytes: int = 0  # libjpeg's whole-image coefficient buffer, if the file needs one


def corrupt(message: str) -> UnprocessableEntity:
    """The 422 for a file whose structure is broken or whose data is missing."""
    return UnprocessableEntity(f"the image is corrupt or truncated: {message}", code="corrupt_image", field="file")


def metadata_flood(what: str) -> PayloadTooLarge:
    """The 413 for a file that carries more metadata than any image needs."""
    return PayloadTooLarge(f"the image carries too much metadata: {what}", code="image_metadata_too_large",
                           field="file")


def inspect_header(data: bytes, fmt: str) -> ImageHeader:
    """Walk the PNG chunks or JPEG markers of `data` without decoding, refusing floods and missing data."""
    return inspect_png(data) if fmt == "PNG" else inspect_jpeg(data)


def inspect_png(data: bytes) -> ImageHeader:
    """Check every chunk's length and CRC, count metadata, require IHDR first and IEND; refuse APNG."""
    view = memoryview(data)
    pos, chunks, ancillary, ancillary_bytes, may_rotate = len(_PNG_SIGNATURE), 0, 0, 0, False
    width = height = 0
    while True:
        if pos + 12 > len(data):
            raise corrupt("the PNG ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise corrupt("a PNG chunk is longer than the file")
        if zlib.crc32(view[pos + 4:end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise corrupt("a PNG chunk fails its CRC check")
        chunks += 1
        if chunks == 1:
            if kind != b"IHDR" or length != 13:
                raise corrupt("the PNG does not start with an IHDR chunk")
            width, height = struct.unpack_from(">II", data, pos + 8)
        if chunks > MAX_PNG_CHUNKS:
            raise metadata_flood(f"more than {MAX_PNG_CHUNKS} PNG chunks")
        if kind == b"acTL":
            raise UnsupportedMediaType("animated PNG (APNG) is not accepted: send a single still image",
                                       code="unsupported_image_type", field="file")
        if kind == b"IEND":
            break
        if kind[0] & 0x20:  # lower-case first letter: ancillary
            ancillary, ancillary_bytes = ancillary + 1, ancillary_bytes + length
            may_rotate = may_rotate or kind in _PNG_METADATA
            _check_ancillary(ancillary, ancillary_bytes, "PNG chunks")
        pos = end
    if not width or not height:
        raise corrupt("the PNG declares no pixels")
    return ImageHeader(width, height, may_rotate=may_rotate)


def inspect_jpeg(data: bytes) -> ImageHeader:
    """Walk the JPEG markers to the first scan; refuse scan data shorter than the frame needs, or no EOI."""
    pos, segments, ancillary, ancillary_bytes, may_rotate = 2, 0, 0, 0, False
    frame: tuple[int, int, int, list[tuple[int, int]]] | None = None
    while True:
        if _FILL_RUN.match(data, pos):
            raise corrupt("a run of JPEG fill bytes")
        while data[pos:pos + 2] == b"\xff\xff":
            pos += 1
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise corrupt("the JPEG has no marker where one is due")
        marker = data[pos + 1]
        segments += 1
        if segments > MAX_JPEG_HEADER_SEGMENTS:
            raise metadata_flood(f"more than {MAX_JPEG_HEADER_SEGMENTS} JPEG segments before the image data")
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9):
            raise corrupt("the JPEG ends or restarts before its image data")
        length = struct.unpack_from(">H", data, pos + 2)[0]
        body, pos = data[pos + 4:pos + 2 + length], pos + 2 + length
        if length < 2 or pos > len(data):
            raise corrupt("a JPEG segment is longer than the file")
        if marker in _JPEG_OTHER_FRAMES:
            raise UnsupportedMediaType("only baseline and progressive JPEG are accepted (not lossless, "
                                       "hierarchical or arithmetic-coded)", code="unsupported_image_type",
                                       field="file")
        if marker in _JPEG_FRAMES:
            frame = _jpeg_frame(body, marker)
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            ancillary, ancillary_bytes = ancillary + 1, ancillary_bytes + length
            may_rotate = may_rotate or marker == 0xE1  # EXIF and XMP live in APP1
            _check_ancillary(ancillary, ancillary_bytes, "JPEG segments")
        elif marker == 0xDA:
            break
    if frame is None or not body:
        raise corrupt("the JPEG has no frame header before its image data")
    return _jpeg_scan_check(data, pos, frame, scan_components=body[0], may_rotate=may_rotate)


def working_bytes(mode: str, size: tuple[int, int], color: str, crop: str, model_width: int,
                  header: ImageHeader) -> int:
    """Upper bound of the bytes that decoding to `mode`/`size` and then `imaging.preprocess` hold at once.

    Every copy is counted as if all were alive together: the decoded image (plus libjpeg's coefficient
    buffer), the colour conversion (and its RGB step, or the 16-bit strips), the EXIF transpose when the
    file may carry an orientation, the centre-square crop and the first resize pass.
    """
    width, height = size
    pixels = width * height
    target = "L" if color == "grayscale" else "RGB"
    per_pixel = BYTES_PER_PIXEL.get(target, 4)
    total = DECODER_OVERHEAD_BYTES + header.coefficient_bytes + pixels * BYTES_PER_PIXEL.get(mode, 4)
    if mode in SIXTEEN_BIT_MODES:
        total += pixels + STRIP_ROWS * width * 16 + (pixels * per_pixel if target != "L" else 0)
    elif mode != target:
        total += pixels * per_pixel + (0 if mode in _ONE_STEP_MODES else pixels * 4)
    if header.may_rotate:
        total += pixels * per_pixel
    if crop == "center_square" and width != height:
        total += min(width, height) ** 2 * per_pixel
    return total + max(width, height) * model_width * per_pixel


def _check_ancillary(count: int, size: int, what: str) -> None:
    if count > MAX_ANCILLARY_CHUNKS:
        raise metadata_flood(f"more than {MAX_ANCILLARY_CHUNKS} metadata {what}")
    if size > MAX_ANCILLARY_BYTES:
        raise metadata_flood(f"more than {MAX_ANCILLARY_BYTES} bytes of metadata {what}")


def _jpeg_frame(body: bytes, marker: int) -> tuple[int, int, int, list[tuple[int, int]]]:
    if len(body) < 6 or len(body) < 6 + 3 * body[5] or not body[5]:
        raise corrupt("the JPEG frame header is too short")
    height, width = struct.unpack_from(">HH", body, 1)
    if not width or not height:
        raise corrupt("the JPEG declares no pixels (or its height only in a DNL marker)")
    if body[0] != 8:
        raise UnsupportedMediaType(f"only 8-bit JPEG is accepted, not {body[0]}-bit", code="unsupported_image_type",
                                   field="file")
    sampling = [(body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(body[5])]
    if any(not h or not v for h, v in sampling):
        raise corrupt("a JPEG component has a zero sampling factor")
    return width, height, marker, sampling


def _jpeg_scan_check(data: bytes, scan_start: int, frame: tuple[int, int, int, list[tuple[int, int]]], *,
                     scan_components: int, may_rotate: bool) -> ImageHeader:
    width, height, marker, sampling = frame
    # Entropy-coded data escapes 0xFF, so this is the (last) EOI; searched from the end, where it usually is.
    end = data.rfind(b"\xff\xd9", scan_start)
    if end < 0:
        raise corrupt("the JPEG has no end-of-image marker")
    # Only a multi-scan file (progressive, or a first scan without every component) is decoded scan by scan;
    # libjpeg refuses a second scan in any other, so counting there would cost ~90 µs per upload for nothing.
    buffered = marker == 0xC2 or scan_components < len(sampling)
    if buffered and data.count(b"\xff\xda", scan_start, end) + 1 > MAX_JPEG_SCANS:
        raise PayloadTooLarge(f"the JPEG has more than {MAX_JPEG_SCANS} scans", code="image_too_large", field="file")
    max_h, max_v = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = []
    for h, v in sampling:
        columns, rows = _ceil(_ceil(width * h, max_h), 8), _ceil(_ceil(height * v, max_v), 8)
        blocks.append((columns, rows, h, v))
    # Huffman coding spends at least one bit on every 8×8 block's DC value, for any component that is
    # coded at all: less data than that cannot be the image the header declares.
    needed = min(columns * rows for columns, rows, _, _ in blocks) // 8
    if end - scan_start < needed:
        raise corrupt(f"the JPEG holds {end - scan_start} bytes of image data where its size needs at least {needed}")
    coefficients = sum(_ceil(c, h) * h * _ceil(r, v) * v for c, r, h, v in blocks) * COEFFICIENT_BYTES_PER_BLOCK
    return ImageHeader(width, height, may_rotate=may_rotate, coefficient_bytes=coefficients if buffered else 0)


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
