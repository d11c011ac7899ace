"""Image decoding, validation and preprocessing: uploaded bytes → the model's input tensor.

Training code uses the same `preprocess` on folders of images, so the model is served exactly the
distribution it was trained on.
"""

from __future__ import annotations

import io
import threading
import warnings
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from slimserve.config import DEFAULT_DECODE_WAIT_SECONDS, DEFAULT_MAX_DECODE_BYTES
from slimserve.errors import PayloadTooLarge, ServiceUnavailable, UnprocessableEntity, UnsupportedMediaType
from slimserve.image_budget import SIXTEEN_BIT_MODES, STRIP_ROWS, ImageHeader, inspect_header, working_bytes
from slimserve.manifest import ImageContract

# Magic numbers decide the type; the file name and the Content-Type header are only hints.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# JPEG DCT scaling (draft) keeps at least this many source pixels per model pixel, which keeps the
# result equivalent to a full decode (see tests/test_imaging.py) at a fraction of the cost.
DRAFT_OVERSAMPLING = 4
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# One full-size decode at a time per process: two at once would need twice the budget. A plain lock (C):
# a BoundedSemaphore is Python code around a Condition, ~20 µs per request for the same one slot.
_DECODE_SLOT = threading.Lock()
# Our own limits (checked_image) are the check; Pillow's bomb *warning* would only duplicate them. Set once for
# the process: `warnings.catch_warnings()` around each open would swap the global filters per request, racing
# with other threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageLimits(NamedTuple):
    """Bounds on what an upload may decode to, and how long it may wait for the decoder."""

    max_pixels: int = 40_000_000
    min_side: int | None = None  # None: the model's own input size
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES  # derivation in config.py
    decode_wait_seconds: float = DEFAULT_DECODE_WAIT_SECONDS


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None if it is not one we accept."""
    for fmt, magics in SIGNATURES.items():
        if any(data.startswith(magic) for magic in magics):
            return fmt
    return None


def open_image(data: bytes, contract: ImageContract, limits: ImageLimits, *, draft: bool = True) -> Image.Image:
    """Decode and validate uploaded bytes into a fully loaded PIL image."""
    return _load(checked_image(data, contract, limits, draft=draft))


def checked_image(data: bytes, contract: ImageContract, limits: ImageLimits, *, draft: bool = True) -> Image.Image:
    """Open `data` lazily after checking its structure, size and decode budget; nothing is decoded yet."""
    if not data:
        raise UnprocessableEntity("the image is empty", code="empty_file", field="file")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedMediaType(
            "the file is not a JPEG or PNG image (decided by its content)", code="unsupported_image_type",
            field="file",
        )
    header = inspect_header(data, fmt)
    if header.width * header.height > limits.max_pixels:
        raise PayloadTooLarge(
            f"the image has more than {limits.max_pixels} pixels", code="image_too_large", field="file"
        )
    min_side = limits.min_side or max(contract.height, contract.width)
    if min(header.width, header.height) < min_side:
        raise UnprocessableEntity(
            f"the image is smaller than {min_side}x{min_side} pixels", code="image_too_small", field="file"
        )
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        if draft and fmt == "JPEG":
            target = DRAFT_OVERSAMPLING * max(contract.height, contract.width)
            image.draft("L" if contract.color == "grayscale" else "RGB", (target, target))
    except Image.DecompressionBombError:
        raise PayloadTooLarge("the image decompresses to too many pixels", code="image_too_large",
                              field="file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise _corrupt() from None
    _check_budget(image, contract, limits, header)
    return image


def preprocess(image: Image.Image, contract: ImageContract, orientation: int | None = None) -> np.ndarray:
    """Apply the contract (orientation, colour, crop, resize, scaling) to one image → (H, W, C) float32.

    `orientation` is the EXIF orientation if the caller has read it already (None: read it here)."""
    if orientation is None:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    # Colour first, then orientation: the same pixels as the other order, but the copies are 8-bit.
    transpose = EXIF_TRANSPOSE.get(orientation)
    image = _to_color(image, contract.color)
    if transpose is not None:
        image = image.transpose(transpose)
    if contract.crop == "center_square" and image.width != image.height:  # a square needs no copy
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((contract.width, contract.height), RESAMPLING[contract.resize])
    array = np.array(image, dtype=np.float32)  # a copy of our own: scaled in place below
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    # In place, and only what the contract asks for: each pass over the float image costs ~20 µs.
    if contract.scale != 1:
        array *= np.float32(contract.scale)
    if contract.offset:
        array += np.float32(contract.offset)
    if contract.layout == "NCHW":
        array = np.transpose(array, (2, 0, 1))
    return np.ascontiguousarray(array, dtype=np.float32)


def image_to_input(data: bytes, contract: ImageContract, limits: ImageLimits | None = None) -> np.ndarray:
    """Uploaded bytes → a batch of one model input, validating on the way."""
    return decode_image(data, contract, limits)[0]


def decode_image(data: bytes, contract: ImageContract,
                 limits: ImageLimits | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Uploaded bytes → a batch of one model input, and the image's (width, height) as displayed."""
    limits = limits or ImageLimits()
    image = checked_image(data, contract, limits)
    width, height = image.size  # after JPEG draft scaling: the aspect ratio is what matters
    # EXIF orientations 5-8 turn the image a quarter: it is displayed (and preprocessed) the other way round.
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    with DecodeSlot(limits.decode_wait_seconds):
        return preprocess(_load(image), contract, orientation)[np.newaxis, ...], (width, height)


class DecodeSlot:
    """Hold the process's one decode slot, or answer 503 `busy` after waiting `wait_seconds` for it."""

    def __init__(self, wait_seconds: float) -> None:
        self.wait_seconds = wait_seconds

    def __enter__(self) -> None:
        if not _DECODE_SLOT.acquire(timeout=self.wait_seconds):
            raise ServiceUnavailable("another image is being decoded; retry shortly", code="busy")

    def __exit__(self, *exc: object) -> None:
        _DECODE_SLOT.release()


def _check_budget(image: Image.Image, contract: ImageContract, limits: ImageLimits, header: ImageHeader) -> None:
    # After draft(): a JPEG decoded by DCT scaling needs memory for the scaled size only.
    need = working_bytes(image.mode, image.size, contract.color, contract.crop, contract.width, header)
    if need > limits.max_decode_bytes:
        raise PayloadTooLarge(
            f"decoding this image would need about {need // 2**20} MB, more than the "
            f"{limits.max_decode_bytes // 2**20} MB allowed", code="image_too_large", field="file",
        )


def _load(image: Image.Image) -> Image.Image:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError):
        raise _corrupt() from None
    # The model sees colour only (RGBA loses its alpha too); a palette's tRNS would make convert() warn.
    image.info.pop("transparency", None)
    return image


def _corrupt() -> UnprocessableEntity:
    return UnprocessableEntity("the image is corrupt or truncated and cannot be decoded", code="corrupt_image",
                               field="file")


def _to_color(image: Image.Image, color: str) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        # 16-bit X-ray PNGs: scale to 8 bits instead of letting convert("L") clip at 255.
        image = _sixteen_to_eight(image)
    target = "L" if color == "grayscale" else "RGB"
    return image if image.mode == target else image.convert(target)


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """round(v * 255 / top) with top 65535 if any v > 255 else 255, clipped to 0–255, in integers by strips.

    v / 257 is never exactly halfway between integers, so (v + 128) // 257 rounds as the float formula did.
    """
    width, height = image.size
    top = image.getextrema()[1]
    out = np.empty((height, width), dtype=np.uint8)
    for row in range(0, height, STRIP_ROWS):
        strip = np.asarray(image.crop((0, row, width, min(row + STRIP_ROWS, height))))
        wide = np.clip(strip, 0, 65535).astype(np.uint32)
        out[row:row + len(wide)] = (wide + 128) // 257 if top > 255 else np.minimum(wide, 255)
    return Image.fromarray(out)
