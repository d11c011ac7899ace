"""Manifest sections for calibration / out-of-scope / CAM, the refusal rule, and the CAM heatmap PNG."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimserve.errors import ModelConfigError
from slimserve.explain import cam_heat, cam_png
from slimserve.manifest import Artifact, ImageContract, Manifest, load_manifest, parse_manifest, save_manifest
from slimserve.model_extras import ActivationMap, Calibration, OutOfScope
from slimserve.out_of_scope import is_out_of_scope, ood_score

SHA = "0" * 64


def manifest(tmp_path: Path, crop: str = "none", **extra) -> Manifest:
    """An image-model manifest with the optional sections given."""
    return Manifest(name="m", version="2", task="image_classification", labels=["NORMAL", "PNEUMONIA"],
                    source=Artifact("model.h5", SHA), input=ImageContract(height=12, width=12, crop=crop),
                    folder=tmp_path, **extra)


def with_all(tmp_path: Path, crop: str = "none") -> Manifest:
    return manifest(tmp_path, crop, calibration=Calibration("platt", 0.5, -1.25),
                    ood=OutOfScope("ood_distance", 3.0, "squared Mahalanobis / dims"), cam=ActivationMap("cam"))


def test_the_sections_round_trip_through_manifest_json(tmp_path):
    save_manifest(with_all(tmp_path))
    loaded = load_manifest(tmp_path)
    assert loaded.calibration == Calibration("platt", 0.5, -1.25, "val")
    assert loaded.ood == OutOfScope("ood_distance", 3.0, "squared Mahalanobis / dims")
    assert loaded.cam == ActivationMap("cam")


def test_a_manifest_without_the_sections_leaves_them_out(tmp_path):
    data = manifest(tmp_path).to_dict()
    assert not {"calibration", "ood", "cam"} & data.keys()


@pytest.mark.parametrize("section, value", [
    ("ood", {"output": "ood_distance"}),                       # no threshold
    ("ood", {"output": "d", "threshold": 1, "extra": 1}),      # unknown key
    ("calibration", {"method": "platt", "scale": 0}),          # a zero scale erases the logit
    ("calibration", {"method": "isotonic", "scale": 1}),
    ("cam", {}),
])
def test_invalid_sections_are_refused(tmp_path, section, value):
    data = manifest(tmp_path).to_dict()
    data[section] = value
    with pytest.raises(ModelConfigError):
        parse_manifest(data, tmp_path)


@pytest.mark.parametrize("score, refused", [(2.99, False), (3.0, False), (3.01, True), (1e9, True),
                                            (float("nan"), True)])
def test_an_image_is_refused_above_the_threshold_and_when_unscorable(tmp_path, score, refused):
    outputs = {"probability": np.array([[0.9]], np.float32), "ood_distance": np.array([[score]], np.float32)}
    assert is_out_of_scope(with_all(tmp_path), outputs) is refused


def test_a_model_without_an_ood_section_refuses_nothing(tmp_path):
    assert ood_score(manifest(tmp_path), {"probability": np.array([[0.9]])}) is None
    assert is_out_of_scope(manifest(tmp_path), {"probability": np.array([[0.9]])}) is False


def cam_with_hot_cell(row: int, col: int) -> dict[str, np.ndarray]:
    cam = np.full((1, 12, 12, 1), -1.0, np.float32)
    cam[0, row, col, 0] = 4.0
    return {"cam": cam}


def alpha(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGBA"
    return np.asarray(image)[..., 3]


def test_the_png_keeps_the_uploads_aspect_ratio_and_is_small(tmp_path):
    png = cam_png(with_all(tmp_path), cam_with_hot_cell(0, 0), (1600, 900))
    assert Image.open(io.BytesIO(png)).size == (128, 72)
    assert Image.open(io.BytesIO(cam_png(with_all(tmp_path), cam_with_hot_cell(0, 0), (100, 60)))).size == (100, 60)


@pytest.mark.parametrize("row, col", [(0, 0), (0, 11), (11, 0), (6, 3)])
def test_the_hottest_cell_lands_where_it_lies_on_the_whole_image(tmp_path, row, col):
    heat = alpha(cam_png(with_all(tmp_path), cam_with_hot_cell(row, col), (120, 96)))
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    # Cell (row, col) of a 12×12 map covers 1/12 of each side of the (whole, uncropped) upload.
    assert int(y * 12 / heat.shape[0]) == row and int(x * 12 / heat.shape[1]) == col


def test_with_a_center_square_crop_the_map_covers_only_the_square(tmp_path):
    heat = alpha(cam_png(with_all(tmp_path, crop="center_square"), cam_with_hot_cell(0, 0), (120, 60)))
    assert heat.shape == (60, 120)
    assert heat[:, :30].max() == 0 and heat[:, 90:].max() == 0
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert y < 60 / 12 and 30 <= x < 30 + 60 / 12


def test_negative_evidence_draws_nothing(tmp_path):
    outputs = {"cam": np.full((1, 12, 12, 1), -2.0, np.float32)}
    assert cam_heat(with_all(tmp_path), outputs).max() == 0
    assert alpha(cam_png(with_all(tmp_path), outputs, (100, 100))).max() == 0


def test_a_model_without_a_cam_output_cannot_explain(tmp_path):
    with pytest.raises(ValueError, match="no activation-map output"):
        cam_png(replace(with_all(tmp_path), cam=None), cam_with_hot_cell(0, 0), (100, 100))
