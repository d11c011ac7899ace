"""The pneumonia training script: a one-epoch smoke run, and the committed artifact it produced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slimserve.manifest import load_manifest, sha256_file
from tests.conftest import BUNDLED, NPZ, needs_shared

FOLDER = BUNDLED.parent
METRIC_KEYS = {"accuracy", "auc", "sensitivity", "specificity", "precision", "f1", "confusion_matrix",
               "threshold", "n"}


@pytest.mark.tensorflow
@pytest.mark.slow
def test_one_epoch_on_a_subset_writes_a_valid_model_folder(tmp_path: Path):
    needs_shared(NPZ)
    from scripts.training import train_pneumonia

    out = tmp_path / "pneumonia"
    train_pneumonia.main(["--limit", "96", "--epochs", "1", "--out", str(out), "--version", "0.0.1"])

    for name in ("model.h5", "manifest.json", "metrics.json", "confusion_matrix.png", "roc.png",
                 "training_curves.png"):
        assert (out / name).is_file(), name
    manifest = load_manifest(out / "model.h5")
    assert manifest.version == "0.0.1"
    assert manifest.source.sha256 == sha256_file(out / "model.h5")
    assert manifest.input.height == manifest.input.width == 28
    assert manifest.training["epochs_run"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        assert metrics[split].keys() >= METRIC_KEYS
        assert metrics[split]["n"] == 96
    assert metrics["threshold"] == manifest.threshold
    assert len(metrics["anchors"]["results"]) >= 2


def test_youden_threshold_sits_in_the_middle_of_the_gap_between_separable_classes():
    from scripts.training.common import youden_threshold

    threshold = youden_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert 0.2 < threshold <= 0.8
    assert threshold == pytest.approx(0.5)


def test_committed_manifest_records_the_committed_h5():
    manifest = load_manifest(BUNDLED)
    assert manifest.source.sha256 == sha256_file(BUNDLED)
    assert manifest.training["script"] == "scripts/training/train_pneumonia.py"


def test_committed_metrics_match_the_manifest():
    manifest = load_manifest(BUNDLED)
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    for split, recorded in manifest.metrics.items():
        for key, value in recorded.items():
            assert metrics[split][key] == value, (split, key)
    assert metrics["threshold"] == manifest.threshold
