"""Pneumonia 2.x training: the patient-level split, calibration and ECE helpers, and a smoke run on tiny images."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.training.calibration import expected_calibration_error, fit_platt, sigmoid
from scripts.training.kermany import split_patients
from slimserve.manifest import load_manifest
from tests.conftest import SAMPLES, needs_shared


def rows(patients_per_class: int = 40, images_per_patient: int = 3) -> list[dict[str, str]]:
    return [{"path": f"{label}/{label}{p}_{i}.jpeg", "label": label, "patient": f"{label}{p}"}
            for label in ("NORMAL", "PNEUMONIA") for p in range(patients_per_class) for i in range(images_per_patient)]


def test_no_patient_is_in_two_splits_and_every_split_has_both_classes():
    splits = split_patients(rows(), seed=0)
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"] or splits["val"] & splits["test"])
    assert len(splits["train"] | splits["val"] | splits["test"]) == 80
    for members in splits.values():
        assert {p[:6] for p in members} == {"NORMAL", "PNEUMO"}
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (56, 12, 12)


def test_the_split_is_fixed_by_the_seed():
    assert split_patients(rows(), seed=3) == split_patients(rows(), seed=3)
    assert split_patients(rows(), seed=3) != split_patients(rows(), seed=4)


def test_platt_scaling_recovers_the_scale_and_bias_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20000)
    labels = rng.random(20000) < sigmoid(0.4 * logits - 1.0)
    scale, bias = fit_platt(logits, labels)
    assert scale == pytest.approx(0.4, abs=0.03) and bias == pytest.approx(-1.0, abs=0.06)
    assert expected_calibration_error(labels, sigmoid(logits)) > 0.1
    assert expected_calibration_error(labels, sigmoid(scale * logits + bias)) < 0.02


def test_ece_of_a_perfectly_confident_right_model_is_zero_and_of_a_wrong_one_is_one():
    labels = np.array([0, 1, 1, 0])
    assert expected_calibration_error(labels, labels.astype(float)) == 0
    assert expected_calibration_error(labels, 1 - labels.astype(float)) == 1


def synthetic_folder(root: Path, patients: int = 10) -> Path:
    """Dark 'normal' and bright-blob 'pneumonia' images, two per patient, with an index.csv."""
    rng = np.random.default_rng(0)
    lines = []
    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for p in range(patients):
            for i in range(2):
                pixels = rng.integers(20, 90, (70, 80), dtype=np.uint8)
                if label == "PNEUMONIA":
                    pixels[20:50, 20:60] += 120
                path = f"{label}/{label.lower()}{p}_{i}.jpeg"
                Image.fromarray(pixels).save(root / path, quality=90)
                lines.append({"path": path, "label": label, "patient": f"{label}{p}"})
    with open(root / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "patient"])
        writer.writeheader()
        writer.writerows(lines)
    return root


@pytest.mark.tensorflow
@pytest.mark.slow
def test_a_short_run_writes_a_served_model_with_calibration_refusal_and_cam(tmp_path, monkeypatch):
    needs_shared(SAMPLES)
    from scripts.training import train_pneumonia_kermany

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the decoded-pixel cache
    out = tmp_path / "model"
    train_pneumonia_kermany.main(["--data", str(synthetic_folder(tmp_path / "data")), "--image-size", "32",
                                  "--width", "4", "--epochs", "4", "--out", str(out), "--version", "0.0.1"])
    manifest = load_manifest(out)
    assert manifest.compiled is not None and manifest.onnx == {"probabilities_output": "probability"}
    assert manifest.calibration.method == "platt" and manifest.ood.output == "ood_distance"
    assert manifest.cam.output == "cam" and manifest.input.crop == "none"
    import onnxruntime as ort

    session = ort.InferenceSession(str(manifest.compiled_path), providers=["CPUExecutionProvider"])
    # By name, not position: tf2onnx orders a dict's outputs by key; the manifest names the one to read.
    assert sorted(output.name for output in session.get_outputs()) == ["cam", "ood_distance", "probability"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 4 and len(metrics["samples"]) == 8
    assert metrics["val"]["refused_as_out_of_scope"] <= 0.01 + 1e-9
    for name in ("roc.png", "confusion_matrix.png", "training_curves.png", "reliability.png", "ood_distance.png"):
        assert (out / name).is_file(), name
    assert list(tmp_path.glob("slimserve-kermany-*.npy"))
