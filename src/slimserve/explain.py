"""Class-activation heatmaps without gradients: the model's `cam` output → a small RGBA PNG over the upload.

The graph computes the map in-graph (the last convolutional maps weighted by the final dense layer, so its
mean over the cells is the model's logit); here it is only coloured and placed. numpy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from PIL import Image

from slimserve.manifest import Manifest

MAX_SIDE = 128  # the map is 12×12 cells: more pixels only cost CPU; clients stretch it over the image
MAX_ALPHA = 0.6


def cam_heat(manifest: Manifest, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The positive-class evidence map (h, w) in [0, 1]: ReLU of the CAM divided by its maximum."""
    if manifest.cam is None:
        raise ValueError(f"model {manifest.name} {manifest.version} has no activation-map output")
    cam = np.asarray(outputs[manifest.cam.output], dtype=np.float32)[0, :, :, 0]
    positive = np.clip(cam, 0.0, None)
    top = float(positive.max())
    return positive / top if top > 0 else positive


def heatmap_size(original_size: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the heatmap for an upload of `original_size`: its aspect ratio, at most `max_side`."""
    width, height = original_size
    factor = min(1.0, max_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def cam_png(manifest: Manifest, outputs: Mapping[str, np.ndarray], original_size: tuple[int, int],
            max_side: int = MAX_SIDE) -> bytes:
    """A PNG with the upload's aspect ratio (`original_size` = (width, height) after EXIF orientation)."""
    out_w, out_h = heatmap_size(original_size, max_side)
    heat = cam_heat(manifest, outputs)
    # Where on the upload the model looked: all of it ("none"), or the centred square it cropped.
    if manifest.input is not None and manifest.input.crop == "center_square":
        side = min(out_w, out_h)
        box = ((out_w - side) // 2, (out_h - side) // 2, side, side)
    else:
        box = (0, 0, out_w, out_h)
    left, top, box_w, box_h = box
    placed = np.asarray(Image.fromarray(heat.astype(np.float32)).resize((box_w, box_h), Image.Resampling.BILINEAR))
    canvas = np.zeros((out_h, out_w), dtype=np.float32)
    canvas[top:top + box_h, left:left + box_w] = np.clip(placed, 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray(_colour(canvas)).save(buffer, format="PNG", compress_level=1)  # 1 ms; optimize took 37
    return buffer.getvalue()


def _colour(heat: np.ndarray) -> np.ndarray:
    """A jet-like ramp (blue → red) whose opacity grows with the heat, so cold areas leave the X-ray visible."""
    rgb = [np.clip(1.5 - np.abs(4 * heat - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]
    alpha = heat * MAX_ALPHA
    return (np.stack([*rgb, alpha], axis=-1) * 255 + 0.5).astype(np.uint8)
