"""Hostile images are refused from their headers, before Pillow decodes them; real X-rays still fit."""

from __future__ import annotations

import io
import struct
import threading
import time
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageFile

from slimserve import create_app
from slimserve.config import from_env
from slimserve.errors import PayloadTooLarge, ServiceUnavailable, UnprocessableEntity, UnsupportedMediaType
from slimserve.image_budget import MAX_ANCILLARY_CHUNKS, MAX_JPEG_HEADER_SEGMENTS, MAX_JPEG_SCANS, MAX_PNG_CHUNKS
from slimserve.imaging import DecodeSlot, ImageLimits, checked_image, image_to_input, preprocess
from slimserve.manifest import ImageContract
from tests.conftest import SAMPLES, image_bytes, needs_shared

CONTRACT = ImageContract(height=28, width=28)
SAMPLES_PER_ROW = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type → samples per pixel


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, before_idat: bytes = b"") -> bytes:
    """A PNG of all-zero pixels, compressed row by row (4000×4000 16-bit: 31 KB on the wire)."""
    row = b"\0" * (1 + width * SAMPLES_PER_ROW[color_type] * bit_depth // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + before_idat + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    """`image` saved as `fmt` in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_jpeg(width: int, height: int, **options) -> bytes:
    """A grayscale JPEG of random noise, so its scan data is as long as a real image's."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", **options)


def jpeg_promising(width: int, height: int) -> bytes:
    """A 40×40 JPEG whose frame header claims `width`×`height` pixels."""
    data = noise_jpeg(40, 40, quality=30)
    sof = data.find(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def scan_flood_jpeg(scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file has `scans` scans."""
    data = encoded(Image.new("L", (64, 64), 90), "JPEG", progressive=True)
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:last] + data[last:end] * (scans - data.count(b"\xff\xda") + 1) + data[end:]


def patched(data: bytes, old: bytes, new: bytes) -> bytes:
    """`data` with the first `old` replaced by `new`."""
    return data.replace(old, new, 1)


@pytest.fixture
def pillow_never_opens(monkeypatch):
    """Refusals from the chunk or marker walk come before Pillow parses anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("Pillow opened a file the header walk should have refused")
    monkeypatch.setattr(Image, "open", refuse)


@pytest.fixture
def pillow_never_decodes(monkeypatch):
    """Refusals from the budget come after Pillow read the header, before it decodes pixels."""
    def refuse(self):
        raise AssertionError("Pillow decoded an image the budget should have refused")
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("draft", [True, False])
def test_every_sample_xray_fits_the_decode_budget(draft):
    needs_shared(SAMPLES)
    for sample in sorted(SAMPLES.glob("*.jpeg")):
        checked_image(sample.read_bytes(), CONTRACT, ImageLimits(), draft=draft)  # raises if refused


@pytest.mark.parametrize(("data", "limits"), [
    (zero_png(6300, 6300, 8, 6), ImageLimits()),  # RGBA, 154 KB: OOM-killed the worker before
    (zero_png(4000, 4000, 16, 0), ImageLimits(max_decode_bytes=48 * 2**20)),  # 16-bit, 31 KB
], ids=["rgba-6300x6300", "16-bit-4000x4000"])
def test_decode_budget_refuses_before_decoding(pillow_never_decodes, data, limits):
    with pytest.raises(PayloadTooLarge) as caught:
        image_to_input(data, CONTRACT, limits)
    assert caught.value.code == "image_too_large"


def test_budget_counts_the_draft_scale_of_a_jpeg():
    data = encoded(Image.new("L", (2000, 2000), 128), "JPEG")
    limits = ImageLimits(max_decode_bytes=6 * 2**20)  # 2000×2000 is 4 MB decoded, 250×250 in draft
    assert checked_image(data, CONTRACT, limits, draft=True).size == (250, 250)
    with pytest.raises(PayloadTooLarge):
        checked_image(data, CONTRACT, limits, draft=False)


def test_decode_budget_is_a_setting(model_path, fake_runtimes):
    assert from_env({"SLIMSERVE_MAX_DECODE_BYTES": "1000"})["MAX_DECODE_BYTES"] == 1000
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "MAX_DECODE_BYTES": 2**20})
    response = app.test_client().post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "image_too_large"


@pytest.mark.parametrize("values", [
    np.random.default_rng(1).integers(0, 65536, (40, 300)),
    np.random.default_rng(2).integers(0, 256, (40, 300)),  # max ≤ 255: scaled by 255, i.e. kept
    np.resize([0, 128, 129, 385, 386, 65407, 65408, 65535], (40, 300)),  # both sides of rounding edges
    np.random.default_rng(3).integers(-70000, 140000, (40, 300)),  # mode I: clipped on both sides
])
def test_sixteen_bit_conversion_equals_the_float_formula(values):
    dtype = np.uint16 if values.min() >= 0 and values.max() < 65536 else np.int32
    image = Image.fromarray(values.astype(dtype))
    wide = values.astype(np.float64)
    top = 65535.0 if wide.max() > 255 else 255.0
    expected = np.round(wide * (255.0 / top)).clip(0, 255).astype(np.uint8)
    contract = ImageContract(height=40, width=300, crop="none")
    np.testing.assert_array_equal(preprocess(image, contract)[..., 0], expected * np.float32(contract.scale))


def test_sixteen_bit_conversion_makes_no_full_size_float_copy():
    image = Image.fromarray(np.random.default_rng(4).integers(0, 65536, (1500, 2000)).astype(np.uint16))
    tracemalloc.start()
    try:
        preprocess(image, CONTRACT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1500 * 2000  # float64 took 8 bytes a pixel, twice over


def test_decodes_run_one_at_a_time(monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_preprocess(image, contract, orientation=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return preprocess(image, contract, orientation)

    monkeypatch.setattr("slimserve.imaging.preprocess", slow_preprocess)
    limits = ImageLimits(decode_wait_seconds=10)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: image_to_input(image_bytes(), CONTRACT, limits), range(4)))
    assert [batch.shape for batch in batches] == [(1, 28, 28, 1)] * 4
    assert most[0] == 1


def test_a_request_waits_briefly_then_gets_503_busy_with_retry_after(client):
    held, release = threading.Event(), threading.Event()

    def hold_the_slot():
        with DecodeSlot(1):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            image_to_input(image_bytes(), CONTRACT, ImageLimits(decode_wait_seconds=0.2))
        assert time.monotonic() - started >= 0.2
        response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "busy"
        assert response.headers["Retry-After"]
    finally:
        release.set()
        holder.join(10)
    assert client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")}).status_code == 200


SMALL_PNG = zero_png(64, 64)
TEXT = png_chunk(b"tEXt", b"k\0v")
BIG_TEXT = png_chunk(b"zTXt", b"k\0\0" + b"\0" * (1024 * 1024))
SMALL_JPEG = noise_jpeg(64, 64)


@pytest.mark.parametrize(("data", "error", "code"), [
    (zero_png(64, 64, before_idat=TEXT * 200_000), PayloadTooLarge, "image_metadata_too_large"),  # 3 MB
    (zero_png(64, 64, before_idat=TEXT * (MAX_ANCILLARY_CHUNKS + 1)), PayloadTooLarge, "image_metadata_too_large"),
    (zero_png(64, 64, before_idat=BIG_TEXT), PayloadTooLarge, "image_metadata_too_large"),
    (SMALL_PNG[:33] + png_chunk(b"IDAT", b"") * MAX_PNG_CHUNKS + SMALL_PNG[33:], PayloadTooLarge,
     "image_metadata_too_large"),
    (SMALL_PNG[:-4] + b"\0\0\0\0", UnprocessableEntity, "corrupt_image"),  # IEND's CRC
    (SMALL_PNG[:-12] + b"\0\0\0\xffIEND", UnprocessableEntity, "corrupt_image"),  # longer than the file
    (SMALL_PNG[:-12], UnprocessableEntity, "corrupt_image"),  # no IEND
    (encoded(Image.new("L", (64, 64)), "PNG", save_all=True, append_images=[Image.new("L", (64, 64), 255)]),
     UnsupportedMediaType, "unsupported_image_type"),  # APNG
    (jpeg_promising(6000, 6000), UnprocessableEntity, "corrupt_image"),  # 1 KB of data for 36 Mpx
    (noise_jpeg(300, 300)[:-2], UnprocessableEntity, "corrupt_image"),  # no EOI
    (noise_jpeg(300, 300)[:6000], UnprocessableEntity, "corrupt_image"),  # truncated scan data
    (scan_flood_jpeg(MAX_JPEG_SCANS + 1), PayloadTooLarge, "image_too_large"),
    (SMALL_JPEG[:2] + b"\xff" * 100_000 + SMALL_JPEG[2:], UnprocessableEntity, "corrupt_image"),  # fill bytes
    (SMALL_JPEG[:2] + b"\xff\xfe\0\x03x" * (MAX_ANCILLARY_CHUNKS + 1) + SMALL_JPEG[2:], PayloadTooLarge,
     "image_metadata_too_large"),  # comment segments
    (SMALL_JPEG[:2] + b"\xff\x01" * (MAX_JPEG_HEADER_SEGMENTS + 1) + SMALL_JPEG[2:], PayloadTooLarge,
     "image_metadata_too_large"),  # any segments
    (patched(SMALL_JPEG, b"\xff\xc0", b"\xff\xc9"), UnsupportedMediaType, "unsupported_image_type"),  # arithmetic
    (patched(SMALL_JPEG, b"\xff\xc0\x00\x0b\x08", b"\xff\xc0\x00\x0b\x0c"), UnsupportedMediaType,
     "unsupported_image_type"),  # 12-bit
], ids=["png-200k-text-chunks", "png-65-text-chunks", "png-1mb-text", "png-empty-idat-flood", "png-bad-crc",
        "png-chunk-past-the-end", "png-no-iend", "apng", "jpeg-promises-more-data", "jpeg-no-eoi",
        "jpeg-truncated-scan", "jpeg-scan-flood", "jpeg-fill-bytes", "jpeg-comment-flood", "jpeg-segment-flood",
        "jpeg-arithmetic",
        "jpeg-12-bit"])
def test_hostile_structure_is_refused_before_pillow_opens_it(pillow_never_opens, data, error, code):
    with pytest.raises(error) as caught:
        image_to_input(data, CONTRACT)
    assert caught.value.code == code and caught.value.field == "file"


def test_limits_leave_room_for_ordinary_metadata():
    image_to_input(zero_png(64, 64, before_idat=TEXT * MAX_ANCILLARY_CHUNKS), CONTRACT)
    image_to_input(encoded(Image.new("L", (64, 64), 90), "JPEG", progressive=True), CONTRACT)


def test_a_baseline_jpeg_with_repeated_scans_is_refused_after_its_one_scan():
    # Scans are counted only where libjpeg decodes scan by scan (progressive): a single-scan baseline file
    # that repeats its scan is not counted, and the decoder stops at the second scan as corrupt.
    data = noise_jpeg(64, 64)
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    flood = data[:last] + data[last:end] * (MAX_JPEG_SCANS + 1) + data[end:]
    checked_image(flood, CONTRACT, ImageLimits())  # the structure check passes without counting them
    with pytest.raises(UnprocessableEntity) as caught:
        image_to_input(flood, CONTRACT)
    assert caught.value.code == "corrupt_image"


def palette_png() -> bytes:
    """A palette PNG whose tRNS gives every entry its own alpha (Pillow warns when converting it)."""
    image = Image.new("P", (64, 64), 3)
    image.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 200, 100, 50] * 64)
    return encoded(image, "PNG", transparency=bytes([0, 255, 128, 7]))


@pytest.mark.parametrize(("data", "gray"), [
    (encoded(Image.new("CMYK", (64, 64), (0, 0, 0, 100)), "JPEG"), 155),
    (palette_png(), 124),  # 0.299·200 + 0.587·100 + 0.114·50, transparency dropped like RGBA's alpha
    (encoded(Image.new("1", (64, 64), 1), "PNG"), 255),
    (encoded(Image.new("LA", (64, 64), (90, 10)), "PNG"), 90),
    (zero_png(64, 64, 16, 4), 0),  # 16-bit LA, which Pillow opens as RGBA
], ids=["cmyk-jpeg", "palette-png-with-transparency", "1-bit-png", "la-png", "16-bit-la-png"])
def test_unusual_modes_decode_to_the_right_gray(data, gray):
    assert abs(image_to_input(data, CONTRACT)[0, 0, 0, 0] * 255 - gray) <= 2


def test_pillows_own_bomb_limit_is_a_413_not_a_500(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×48 is more than twice that
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "image_too_large"
