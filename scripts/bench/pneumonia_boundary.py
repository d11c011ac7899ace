"""Where pneumonia 2.0.0's out-of-scope refusal draws its line: the 8 sample X-rays, transformed.

    python -m scripts.bench.pneumonia_boundary      # prints one line per transformation
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageOps

from slimserve.imaging import ImageLimits, image_to_input
from slimserve.manifest import load_manifest
from slimserve.out_of_scope import is_out_of_scope, ood_score
from slimserve.paths import REPO_ROOT, shared_data
from slimserve.runtimes.base import RuntimeOptions
from slimserve.runtimes.onnx import OnnxRuntime


def _tint(image: Image.Image) -> Image.Image:
    return Image.merge("RGB", (image, image.point(lambda v: v * 0.7), image.point(lambda v: v * 0.4)))


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as is": lambda image: image,
    "negative": ImageOps.invert,
    "rotated 90": lambda image: image.rotate(90, expand=True),
    "upside down": lambda image: image.rotate(180),
    "mirrored": ImageOps.mirror,
    "centre half crop": lambda image: image.crop((image.width // 4, image.height // 4,
                                                  3 * image.width // 4, 3 * image.height // 4)),
    "colour tint": _tint,
}


def main() -> None:
    """Print, per transformation, how many of the 8 samples are refused and their distance range."""
    manifest = load_manifest(REPO_ROOT / "artifacts" / "models" / "pneumonia" / "2.0.0")
    runtime = OnnxRuntime(manifest, RuntimeOptions())
    runtime.load()
    paths = sorted(shared_data("pneumonia", "samples").glob("*.jpeg"))
    for name, transform in VARIANTS.items():
        refused, distances = 0, []
        for path in paths:
            buffer = io.BytesIO()
            transform(Image.open(path).convert("L")).save(buffer, "PNG")
            outputs = runtime.predict_named(image_to_input(buffer.getvalue(), manifest.input, ImageLimits()))
            refused += is_out_of_scope(manifest, outputs)
            distances.append(ood_score(manifest, outputs))
        print(f"{name:18s} refused {refused}/{len(paths)}  ood_distance {min(distances):.2f}-{max(distances):.2f}")


if __name__ == "__main__":
    main()
