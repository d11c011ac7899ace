"""Evaluate the compiled pneumonia 2.x graph and write its manifest, metrics.json and plots.

Everything here runs the ONNX graph the server runs, on inputs decoded the way the server decodes them.
"""

from __future__ import annotations

import argparse
import collections
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from scripts.training.calibration import expected_calibration_error, plot_reliability
from scripts.training.common import (
    THRESHOLD_RULE,
    binary_metrics,
    plot_confusion,
    plot_roc,
    plot_training_curves,
    plt,
    write_json,
)
from scripts.training.out_of_scope_set import out_of_scope_images
from scripts.training.train_pneumonia import LABELS, Data
from slimserve.imaging import ImageLimits, image_to_input
from slimserve.manifest import Manifest, save_manifest
from slimserve.parity import run_onnx
from slimserve.paths import shared_data

SAMPLES = shared_data("pneumonia", "samples")


def served_outputs(onnx: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """probability and ood_distance of the compiled graph for every image, in batches of 256."""
    parts: dict[str, list[np.ndarray]] = {"probability": [], "ood_distance": []}
    for start in range(0, len(x), 256):
        probability, distance = run_onnx(onnx, x[start:start + 256], ["probability", "ood_distance"])
        parts["probability"].append(probability.ravel())
        parts["ood_distance"].append(distance.ravel())
    return {name: np.concatenate(values) for name, values in parts.items()}


def out_of_scope_report(manifest: Manifest, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Refusal rate on the generated out-of-scope set, overall and per category; and the distances."""
    items = out_of_scope_images(seed)
    batch = np.concatenate([image_to_input(data, manifest.input, ImageLimits()) for _, data in items])
    distances = served_outputs(manifest.compiled_path, batch)["ood_distance"]
    refused = distances > manifest.ood.threshold
    by_category: dict[str, list[bool]] = collections.defaultdict(list)
    for (category, _), flag in zip(items, refused, strict=True):
        by_category[category].append(bool(flag))
    return {
        "n": len(items), "refused": int(refused.sum()), "refused_fraction": round(float(refused.mean()), 4),
        "by_category": {name: {"n": len(flags), "refused": int(sum(flags))} for name, flags in by_category.items()},
        "lowest_distance": round(float(distances.min()), 4),
    }, distances


def sample_predictions(manifest: Manifest) -> list[dict[str, Any]]:
    """The served answer for each of the 8 official-test sample X-rays: label, P(PNEUMONIA), distance."""
    rows = []
    for path in sorted(SAMPLES.glob("*.jpeg")):
        batch = image_to_input(path.read_bytes(), manifest.input, ImageLimits())
        out = served_outputs(manifest.compiled_path, batch)
        probability, distance = float(out["probability"][0]), float(out["ood_distance"][0])
        rows.append({"file": path.name, "truth": path.name.split("_", 1)[0].upper(),
                     "prediction": LABELS[int(probability >= manifest.threshold)],
                     "probability": round(probability, 4), "ood_distance": round(distance, 4),
                     "refused": bool(distance > manifest.ood.threshold)})
    return rows


def write_report(manifest: Manifest, data: Data, args: argparse.Namespace, argv: Sequence[str],
                 history: dict[str, list[float]], best_epoch: int, seconds: float,
                 outputs: dict[str, dict[str, np.ndarray]], calibration: dict[str, Any],
                 parameters: int) -> dict[str, Any]:
    """Evaluate, then write manifest.json (with metrics), metrics.json and the plots into the model folder."""
    out = manifest.folder
    test_raw = calibration.pop("_test_raw")
    splits = {"val": data.val, "test": data.test}
    results = {}
    for name, split in splits.items():
        scores = outputs[name]["probability"]
        results[name] = binary_metrics(split.y, scores, manifest.threshold)
        results[name]["ece"] = round(expected_calibration_error(split.y, scores), 4)
        results[name]["refused_as_out_of_scope"] = round(
            float(np.mean(outputs[name]["ood_distance"] > manifest.ood.threshold)), 4)
    oos, oos_distances = out_of_scope_report(manifest, args.seed)
    samples = sample_predictions(manifest)
    command = shlex.join(["python", "-m", "scripts.training.train_pneumonia_kermany", *argv])
    keys = ("accuracy", "auc", "sensitivity", "specificity", "ece", "n")
    manifest = replace(manifest, training={
        "script": "scripts/training/train_pneumonia_kermany.py", "command": command,
        "data": data.name, "data_sha256": data.sha256, "seed": args.seed,
        "split": "by patient, per class 70/15/15 train/val/internal test (numpy default_rng(seed))",
        "epochs_run": len(history["loss"]), "selected_epoch": best_epoch, "parameters": parameters,
        "threshold_rule": THRESHOLD_RULE, "training_seconds": round(seconds, 1),
        "framework": f"tensorflow {tf.__version__} / keras {keras.__version__}",
    }, metrics={
        "test": {key: results["test"][key] for key in keys},
        "val": {key: results["val"][key] for key in ("accuracy", "auc", "ece")},
        "out_of_scope_refused": oos["refused_fraction"],
        "xrays_refused": {"val": results["val"]["refused_as_out_of_scope"],
                          "test": results["test"]["refused_as_out_of_scope"]},
    })
    save_manifest(manifest)
    metrics = {
        "model": f"pneumonia {manifest.version}", "labels": list(LABELS), "positive_label": "PNEUMONIA",
        "threshold": manifest.threshold, "threshold_rule": THRESHOLD_RULE,
        "confusion_matrix_layout": "[[tn, fp], [fn, tp]]: rows = true label, columns = predicted",
        "evaluated_on": "the compiled ONNX graph (model.onnx), inputs decoded as the server decodes uploads",
        "val": results["val"], "test": results["test"], "calibration": calibration,
        "out_of_scope": {"threshold": manifest.ood.threshold, **oos}, "samples": samples,
        "selected_epoch": best_epoch, "epochs_run": len(history["loss"]), "parameters": parameters,
        "model_bytes": {"h5": manifest.source_path.stat().st_size, "onnx": manifest.compiled_path.stat().st_size},
        "training_seconds": round(seconds, 1), "command": command, "seed": args.seed,
    }
    write_json(out / "metrics.json", metrics)
    plot_confusion({name: results[name]["confusion_matrix"] for name in splits}, LABELS,
                   out / "confusion_matrix.png", manifest.threshold)
    plot_roc({name: (split.y, outputs[name]["probability"]) for name, split in splits.items()},
             manifest.threshold, out / "roc.png", title="ROC, served P(PNEUMONIA)")
    plot_training_curves(history, out / "training_curves.png", best_epoch)
    plot_reliability({"internal test, uncalibrated": (data.test.y, test_raw),
                      "internal test, served (calibrated)": (data.test.y, outputs["test"]["probability"])},
                     out / "reliability.png", "Reliability, internal test")
    _plot_distances(outputs, oos_distances, manifest.ood.threshold, out / "ood_distance.png")
    return metrics


def _plot_distances(outputs: dict[str, dict[str, np.ndarray]], oos: np.ndarray, threshold: float,
                    path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    bins = np.logspace(np.log10(max(1e-3, min(d["ood_distance"].min() for d in outputs.values()))),
                       np.log10(max(oos.max(), threshold * 10)), 60)
    for name, values in (("val X-rays", outputs["val"]["ood_distance"]),
                         ("internal-test X-rays", outputs["test"]["ood_distance"]), ("out-of-scope set", oos)):
        ax.hist(values, bins=bins, alpha=0.5, label=name, density=True)
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xscale="log", xlabel="ood_distance", ylabel="density", title="Out-of-scope distance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
