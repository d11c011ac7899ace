"""Image decoding and preprocessing: parity with PneumoniaMNIST, draft-mode equivalence, odd inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from slimserve.errors import PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType
from slimserve.imaging import ImageLimits, image_to_input, open_image, preprocess, sniff_format
from slimserve.manifest import ImageContract
from tests.conftest import NPZ, SAMPLES, image_bytes, needs_shared

CONTRACT = ImageContract(height=28, width=28)
# Each sample's counterpart in the PneumoniaMNIST test split, found by nearest neighbour over all
# 5,856 images (see README "Preprocessing parity"). Three normal samples have no counterpart there.
COUNTERPARTS = {
    "normal_NORMAL2-IM-0045-0001.jpeg": 50,
    "pneumonia_person111_bacteria_535.jpeg": 227,
    "pneumonia_person142_bacteria_683.jpeg": 219,
    "pneumonia_person81_bacteria_398.jpeg": 111,
    "pneumonia_person82_bacteria_402.jpeg": 537,
}
UNMATCHED = ["normal_IM-0073-0001.jpeg", "normal_NORMAL2-IM-0283-0001.jpeg", "normal_NORMAL2-IM-0315-0001.jpeg"]


def served_pixels(name: str, draft: bool = True) -> np.ndarray:
    """The served 28x28 input of a sample, back on the 0–255 pixel scale."""
    image = open_image((SAMPLES / name).read_bytes(), CONTRACT, ImageLimits(), draft=draft)
    return preprocess(image, CONTRACT)[..., 0] * 255.0


@pytest.fixture(scope="module")
def test_split() -> np.ndarray:
    needs_shared(NPZ)
    with np.load(NPZ) as data:
        return data["test_images"].astype(np.float32)


def test_served_input_reproduces_the_training_arrays(test_split):
    errors = []
    for name, index in COUNTERPARTS.items():
        pixels = served_pixels(name)
        distances = np.abs(test_split - pixels).mean(axis=(1, 2))
        assert int(distances.argmin()) == index, name
        errors.append(distances[index])
    # Mean absolute difference on the 0–255 scale; the rest is JPEG re-encoding of the samples.
    assert float(np.mean(errors)) <= 3.0
    assert max(errors) <= 4.0


def test_samples_without_counterpart_are_far_from_every_test_image(test_split):
    for name in UNMATCHED:
        assert np.abs(test_split - served_pixels(name)).mean(axis=(1, 2)).min() > 10, name


@pytest.mark.parametrize("name", sorted(COUNTERPARTS) + UNMATCHED)
def test_draft_decode_matches_full_decode(name):
    needs_shared(SAMPLES)
    difference = np.abs(served_pixels(name, draft=True) - served_pixels(name, draft=False))
    assert difference.mean() < 1.0 and difference.max() < 12


def test_draft_decodes_large_jpegs_at_reduced_size():
    needs_shared(SAMPLES)
    data = (SAMPLES / "normal_NORMAL2-IM-0045-0001.jpeg").read_bytes()
    drafted = open_image(data, CONTRACT, ImageLimits(), draft=True)
    assert min(drafted.size) >= 4 * 28
    assert drafted.size[0] < Image.open(io.BytesIO(data)).size[0] // 4 + 1


def test_sniff_format_reads_magic_numbers():
    assert sniff_format(image_bytes(fmt="JPEG")) == "JPEG"
    assert sniff_format(image_bytes(fmt="PNG")) == "PNG"
    assert sniff_format(image_bytes(fmt="BMP")) is None


def test_sixteen_bit_png_is_scaled_not_clipped():
    wide = np.full((40, 40), 40000, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    value = image_to_input(buffer.getvalue(), CONTRACT)[0, 0, 0, 0]
    assert abs(value * 255 - 40000 / 257) < 1.0


def test_rgba_png_becomes_grayscale():
    batch = image_to_input(image_bytes(fmt="PNG", mode="RGBA", color=(200, 200, 200, 10)), CONTRACT)
    assert batch.shape == (1, 28, 28, 1)


def test_rgb_contract_gives_three_channels():
    contract = ImageContract(height=32, width=32, channels=3, color="rgb")
    batch = image_to_input(image_bytes(size=(64, 64), mode="RGB", color=(255, 0, 0)), contract)
    assert batch.shape == (1, 32, 32, 3)
    assert batch[0, 0, 0, 0] > 0.9 and batch[0, 0, 0, 1] < 0.1


def test_exif_orientation_is_applied():
    image = Image.new("L", (80, 40), 0)
    image.paste(255, (0, 0, 40, 40))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    contract = ImageContract(height=28, width=28, crop="none")
    batch = image_to_input(buffer.getvalue(), contract)[0, :, :, 0]
    assert batch[:14].mean() > 0.8 and batch[14:].mean() < 0.2  # white ends up on top


def test_center_square_crop_uses_the_middle():
    image = Image.new("L", (90, 30), 0)
    image.paste(255, (30, 0, 60, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert image_to_input(buffer.getvalue(), CONTRACT).min() > 0.99


@pytest.mark.parametrize(("data", "error"), [
    (b"", UnprocessableEntity),
    (b"GIF89a....", UnsupportedMediaType),
    (b"\xff\xd8\xff\xe0broken", UnprocessableEntity),
])
def test_bad_bytes_raise_typed_errors(data, error):
    with pytest.raises(error):
        image_to_input(data, CONTRACT)


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(PayloadTooLarge):
        image_to_input(image_bytes(size=(200, 200)), CONTRACT, ImageLimits(max_pixels=1000))
