"""An out-of-scope image set built from what the installed packages ship and what can be rendered here.

Photos (matplotlib's and scikit-learn's sample images, in colour and grey), an MRI slice and terrain maps
(matplotlib sample data), upscaled handwritten digits (scikit-learn), rendered documents, screenshots and
charts, and synthetic flat / noise / gradient / checkerboard images. Every image is encoded as PNG or JPEG
bytes, as a client would upload it; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import cbook, font_manager
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from scripts.training.common import plt

WORDS = ["patient", "report", "invoice", "total", "amount", "date", "signature", "the", "of", "and", "to", "in",
         "results", "summary", "table", "figure", "method", "analysis", "revenue", "quarter", "growth", "model",
         "server", "request", "response", "error", "value"]
Generated = Iterator[tuple[str, bytes]]


def out_of_scope_images(seed: int = 0) -> list[tuple[str, bytes]]:
    """(category, encoded image) pairs; the same list for the same seed."""
    rng = np.random.default_rng(seed)
    builders: list[Callable[[np.random.Generator], Generated]] = [
        _flat, _noise, _gradients, _checkerboards, _documents, _screenshots, _charts, _photos, _mri, _terrain,
        _digits,
    ]
    return [item for build in builders for item in build(rng)]


def _encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(160, 900)), int(rng.integers(160, 900))


def _flat(rng: np.random.Generator) -> Generated:
    for level in np.linspace(0, 255, 12).astype(int):
        yield "flat", _encode(Image.new("L", _size(rng), int(level)), rng)
    for _ in range(4):
        yield "flat", _encode(Image.new("RGB", _size(rng), tuple(int(v) for v in rng.integers(0, 256, 3))), rng)


def _noise(rng: np.random.Generator) -> Generated:
    for i in range(24):
        w, h = _size(rng)
        shape = (h, w) if i % 2 else (h, w, 3)
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        if i >= 12:  # smooth noise: blotches with an X-ray-like grey texture
            image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 12))))
        yield ("noise_blurred" if i >= 12 else "noise"), _encode(image, rng)


def _gradients(rng: np.random.Generator) -> Generated:
    for i in range(12):
        w, h = _size(rng)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        fields = [xx / w, yy / h, (xx + yy) / (w + h), np.hypot(xx - w / 2, yy - h / 2) / np.hypot(w, h) * 2]
        ramp = np.clip(fields[i % 4], 0, 1)
        if i >= 8:
            ramp = 1 - ramp
        yield "gradient", _encode(Image.fromarray((ramp * 255).astype(np.uint8)), rng)


def _checkerboards(rng: np.random.Generator) -> Generated:
    for cell in (4, 8, 12, 16, 24, 32, 48, 64, 96, 128):
        w, h = _size(rng)
        yy, xx = np.mgrid[0:h, 0:w]
        board = (((xx // cell) + (yy // cell)) % 2 * 255).astype(np.uint8)
        yield "checkerboard", _encode(Image.fromarray(board), rng)


def _font(size: int, mono: bool = False) -> ImageFont.FreeTypeFont:
    # matplotlib ships the DejaVu fonts, so this works wherever the training environment does.
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans Mono" if mono else "DejaVu Sans"), size)


def _sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words))


def _documents(rng: np.random.Generator) -> Generated:
    for i in range(20):
        w = int(rng.integers(500, 900))
        page = Image.new("L" if i % 2 else "RGB", (w, int(w * 1.41)), 255 if i % 3 else 235)
        draw = ImageDraw.Draw(page)
        size = int(rng.integers(12, 26))
        draw.text((40, 30), _sentence(rng, 3).upper(), fill=0, font=_font(size + 8))
        y = 40 + size * 3
        while y < page.height - 60:
            draw.text((40, y), _sentence(rng, int(rng.integers(3, w // (size * 4)))), fill=0, font=_font(size))
            y += int(size * 1.6)
        yield "document", _encode(page, rng)


def _screenshots(rng: np.random.Generator) -> Generated:
    for i in range(12):
        w, h = int(rng.integers(600, 1200)), int(rng.integers(300, 800))
        dark = i % 2 == 0
        shot = Image.new("RGB", (w, h), (30, 30, 36) if dark else (250, 250, 250))
        draw = ImageDraw.Draw(shot)
        draw.rectangle((0, 0, w, 28), fill=(60, 60, 70) if dark else (220, 220, 225))
        size, y = int(rng.integers(11, 18)), 40
        while y < h - 20:
            colour = tuple(int(v) for v in rng.integers(120, 256, 3)) if dark else (20, 20, 20)
            indent = 20 + 24 * int(rng.integers(0, 4))
            draw.text((indent, y), _sentence(rng, int(rng.integers(2, 8))), fill=colour, font=_font(size, True))
            y += size + 6
        yield "screenshot", _encode(shot, rng)


def _charts(rng: np.random.Generator) -> Generated:
    kinds = ("line", "bar", "scatter", "pie", "hist")
    for i in range(20):
        fig, ax = plt.subplots(figsize=(rng.uniform(4, 8), rng.uniform(3, 6)), dpi=80)
        kind = kinds[i % len(kinds)]
        data = rng.normal(size=50).cumsum()
        if kind == "line":
            ax.plot(data)
            ax.plot(data[::-1])
        elif kind == "bar":
            ax.bar(range(8), rng.uniform(1, 10, 8))
        elif kind == "scatter":
            ax.scatter(rng.normal(size=200), rng.normal(size=200), s=8)
        elif kind == "pie":
            ax.pie(rng.uniform(1, 5, 5))
        else:
            ax.hist(rng.normal(size=500), bins=30)
        ax.set_title(_sentence(rng, 3))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        yield "chart", buffer.getvalue()


def _sample(name: str) -> Path:
    return Path(cbook.get_sample_data(name, asfileobj=False))


def _photos(rng: np.random.Generator) -> Generated:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(array) for array in load_sample_images().images]
    photos += [Image.open(_sample(name)).convert("RGB")
               for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")]
    for photo in photos:
        for j in range(8):
            image = photo
            if j >= 2:  # random crops of at least half of each side
                w, h = photo.size
                cw, ch = int(w * rng.uniform(0.5, 1)), int(h * rng.uniform(0.5, 1))
                left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                image = photo.crop((left, top, left + cw, top + ch))
            if image.width < 128 or image.height < 128:
                image = image.resize((max(128, image.width), max(128, image.height)))
            if j % 2:  # a grey photo is nearer to an X-ray than a colour one
                yield "photo_gray", _encode(image.convert("L"), rng)
            else:
                yield "photo", _encode(image, rng)


def _mri(rng: np.random.Generator) -> Generated:
    with gzip.open(_sample("s1045.ima.gz")) as handle:
        slice_ = np.frombuffer(handle.read(), np.uint16).reshape(256, 256).astype(np.float32)
    base = Image.fromarray((slice_ / slice_.max() * 255).astype(np.uint8))
    for j in range(8):
        image = base.rotate(float(rng.uniform(-20, 20))) if j else base
        side = int(rng.integers(256, 700))
        yield "mri", _encode(image.resize((side, side), Image.Resampling.BICUBIC), rng)


def _terrain(rng: np.random.Generator) -> Generated:
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        grid = np.load(_sample(name))[key].astype(np.float32)
        grey = (grid - grid.min()) / max(float(np.ptp(grid)), 1e-6)
        for colour in (False, True):
            array = (matplotlib.colormaps["terrain"](grey)[..., :3] if colour else grey) * 255
            yield "terrain", _encode(Image.fromarray(array.astype(np.uint8)).resize((512, 420)), rng)


def _digits(rng: np.random.Generator) -> Generated:
    from sklearn.datasets import load_digits

    digits = load_digits().images
    for index in rng.choice(len(digits), 10, replace=False):
        grey = (digits[index] / 16 * 255).astype(np.uint8)
        yield "digit", _encode(Image.fromarray(grey).resize((256, 256), Image.Resampling.NEAREST), rng)
