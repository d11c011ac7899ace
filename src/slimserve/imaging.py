"""Image decoding, validation and preprocessing: uploaded bytes → the model's input tensor.

Training code uses the same `preprocess` on folders of images, so the model is served exactly the
distribution it was trained on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from slimserve.errors import PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType
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
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what an upload may decode to."""

    max_pixels: int = 40_000_000
    min_side: int | None = None  # None: the model's own input size


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None if it is not one we accept."""
    for fmt, magics in SIGNATURES.items():
        if any(data.startswith(magic) for magic in magics):
            return fmt
    return None


def open_image(data: bytes, contract: ImageContract, limits: ImageLimits, *, draft: bool = True) -> Image.Image:
    """Decode and validate uploaded bytes into a fully loaded PIL image."""
    if not data:
        raise UnprocessableEntity("the image is empty", code="empty_file", field="file")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedMediaType(
            "the file is not a JPEG or PNG image (decided by its content)", code="unsupported_image_type",
            field="file",
        )
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the check; Pillow's bomb warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise PayloadTooLarge(
                    f"the image has more than {limits.max_pixels} pixels", code="image_too_large", field="file"
                )
            min_side = limits.min_side or max(contract.height, contract.width)
            if min(width, height) < min_side:
                raise UnprocessableEntity(
                    f"the image is smaller than {min_side}x{min_side} pixels", code="image_too_small", field="file"
                )
            if draft and fmt == "JPEG":
                target = DRAFT_OVERSAMPLING * max(contract.height, contract.width)
                image.draft("L" if contract.color == "grayscale" else "RGB", (target, target))
            image.load()
    except (PayloadTooLarge, UnprocessableEntity):
        raise
    except Image.DecompressionBombError:
        raise PayloadTooLarge("the image decompresses to too many pixels", code="image_too_large",
                              field="file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise UnprocessableEntity(
            "the image is corrupt or truncated and cannot be decoded", code="corrupt_image", field="file"
        ) from None
    return image


def preprocess(image: Image.Image, contract: ImageContract) -> np.ndarray:
    """Apply the contract (orientation, colour, crop, resize, scaling) to one image → (H, W, C) float32."""
    image = ImageOps.exif_transpose(image) or image
    image = _to_color(image, contract.color)
    if contract.crop == "center_square":
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    image = image.resize((contract.width, contract.height), RESAMPLING[contract.resize])
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    array = array * np.float32(contract.scale) + np.float32(contract.offset)
    if contract.layout == "NCHW":
        array = np.transpose(array, (2, 0, 1))
    return np.ascontiguousarray(array, dtype=np.float32)


def image_to_input(data: bytes, contract: ImageContract, limits: ImageLimits | None = None) -> np.ndarray:
    """Uploaded bytes → a batch of one model input, validating on the way."""
    image = open_image(data, contract, limits or ImageLimits())
    return preprocess(image, contract)[np.newaxis, ...]


def _to_color(image: Image.Image, color: str) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit X-ray PNGs: scale to 8 bits instead of letting convert("L") clip at 255.
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        image = Image.fromarray(np.round(wide * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")
    target = "L" if color == "grayscale" else "RGB"
    return image if image.mode == target else image.convert(target)
