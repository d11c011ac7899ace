"""Train the pneumonia CNN (NORMAL vs PNEUMONIA) and write the model folder slimserve serves.

Fits on the train split, selects the epoch and the decision threshold on the val split, and evaluates the
test split once, at the end. Writes model.h5, manifest.json, metrics.json and three plots into --out.

    .venv/bin/python -m scripts.training.train_pneumonia --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from keras import layers

from scripts.training.common import (
    THRESHOLD_RULE,
    binary_metrics,
    plot_confusion,
    plot_roc,
    plot_training_curves,
    sha256_file,
    write_json,
    youden_threshold,
)
from scripts.training.pneumonia_fit import train
from slimserve.imaging import ImageLimits, open_image, preprocess
from slimserve.manifest import Artifact, ImageContract, Manifest, save_manifest
from slimserve.paths import REPO_ROOT, shared_data

REPO = REPO_ROOT

LABELS = ("NORMAL", "PNEUMONIA")
DEFAULT_DATA = shared_data("pneumonia", "pneumoniamnist.npz")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
# Published results on the same official test split, for comparison (MedMNIST v2, Yang et al. 2023).
ANCHORS = [
    {"model": "ResNet-18 (28 px)", "accuracy": 0.854, "auc": 0.944},
    {"model": "ResNet-18 (224 px)", "accuracy": 0.864, "auc": 0.956},
    {"model": "ResNet-50 (28 px)", "accuracy": 0.854, "auc": 0.948},
    {"model": "ResNet-50 (224 px)", "accuracy": 0.884, "auc": 0.962},
    {"model": "auto-sklearn", "accuracy": 0.855, "auc": 0.942},
    {"model": "AutoKeras", "accuracy": 0.878, "auc": 0.947},
    {"model": "Google AutoML Vision", "accuracy": 0.946, "auc": 0.991},
]


@dataclass(frozen=True)
class Split:
    """Model inputs (N, H, W, 1) float32 = pixel/255, and labels (N,) with 1 = PNEUMONIA."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Data:
    """The three splits and where they came from."""

    train: Split
    val: Split
    test: Split
    name: str
    sha256: str


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="pneumoniamnist.npz, or a folder {train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg")
    parser.add_argument("--image-size", type=int, default=28, help="square model input (folder data only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak of the cosine schedule")
    parser.add_argument("--width", type=int, default=14, help="filters in the first stage of each branch")
    parser.add_argument("--branches", type=int, default=3,
                        help="parallel CNNs whose outputs are averaged; one branch is 0.8 MB at 128 px and "
                             "1 MB at 224 px, so there use 1 (and --width 12 at 224) to stay under 1 MB")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--out", type=Path, help="default: artifacts/models/pneumonia/<version>/")
    parser.add_argument("--limit", type=int, help="use at most N images per split (smoke tests)")
    args = parser.parse_args(argv)
    args.out = args.out or REPO / "artifacts" / "models" / "pneumonia" / args.version
    return args


def load_data(path: Path, image_size: int, limit: int | None = None, seed: int = 0) -> Data:
    """Load the npz or the Kermany-style folder, optionally limited to a seeded subset per split."""
    if path.is_dir():
        data = _load_folder(path, image_size)
    else:
        if image_size != 28:
            raise SystemExit(f"{path.name} holds 28x28 images; --image-size {image_size} needs image folders")
        data = _load_npz(path)
    if limit:
        rng = np.random.default_rng(seed)
        subset = {}
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            keep = np.sort(rng.permutation(len(split.y))[:limit])
            subset[name] = Split(split.x[keep], split.y[keep])
        data = Data(**subset, name=data.name, sha256=data.sha256)
    return data


def _load_npz(path: Path) -> Data:
    arrays = np.load(path)
    splits = {
        # The served contract is pixel * (1/255) and nothing else; any further scaling lives in the model.
        name: Split(arrays[f"{name}_images"][..., np.newaxis].astype(np.float32) * np.float32(1 / 255),
                    arrays[f"{name}_labels"].ravel().astype(np.float32))
        for name in ("train", "val", "test")
    }
    return Data(**splits, name=path.name, sha256=sha256_file(path))


def _load_folder(root: Path, image_size: int) -> Data:
    # Exactly the server's decoding and preprocessing, so training sees what the endpoint will feed the model.
    contract = ImageContract(height=image_size, width=image_size)
    limits = ImageLimits(min_side=1)
    digest = hashlib.sha256()
    splits = {}
    for name in ("train", "val", "test"):
        images, labels = [], []
        for label, class_name in enumerate(LABELS):
            folder = root / name / class_name
            for file in sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                data = file.read_bytes()
                images.append(preprocess(open_image(data, contract, limits), contract))
                labels.append(label)
                # The data's identity: every relative path and its content hash, in a fixed order.
                relative = file.relative_to(root).as_posix()
                digest.update(f"{relative}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        if not images or len(set(labels)) < 2:
            raise SystemExit(f"{root / name} needs images in both NORMAL/ and PNEUMONIA/")
        splits[name] = Split(np.stack(images), np.asarray(labels, dtype=np.float32))
    return Data(**splits, name=root.name, sha256=digest.hexdigest())


def build_model(image_size: int, width: int, branches: int, dropout: float = 0.3) -> keras.Model:
    """`branches` small VGG-style CNNs on the same input, their sigmoid outputs averaged: P(PNEUMONIA)."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    # Pool until the feature map is about 7x7: two pools at 28 px, four at 128, five at 224.
    pools = max(0, int(np.log2(image_size / 7)))
    outputs = []
    for _ in range(branches):
        x = inputs
        for stage in range(pools + 1):
            filters = width * 2 ** min(stage, 2)
            for _ in range(2):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)  # BN supplies the bias
                x = layers.BatchNormalization()(x)
                x = layers.ReLU()(x)
            if stage < pools:
                x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(dropout)(x)
        outputs.append(layers.Dense(1, activation="sigmoid")(x))
    output = outputs[0] if branches == 1 else layers.Average(name="ensemble")(outputs)
    return keras.Model(inputs, output, name="pneumonia_cnn")


def predict(model: keras.Model, split: Split) -> np.ndarray:
    """P(PNEUMONIA) for every image of a split."""
    return model.predict(split.x, batch_size=256, verbose=0).ravel()


def write_outputs(model: keras.Model, data: Data, args: argparse.Namespace, argv: Sequence[str],
                  history: dict[str, list[float]], best_epoch: int, seconds: float) -> dict[str, Any]:
    """Save model.h5, choose the threshold on val, evaluate test once, write manifest, metrics and plots."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    h5 = out / "model.h5"
    model.save(h5, include_optimizer=False)
    reloaded = keras.models.load_model(h5, compile=False)
    val_scores = predict(reloaded, data.val)
    # Rounded before use, so the reported metrics are those of the exact threshold the server applies.
    threshold = round(youden_threshold(data.val.y, val_scores), 6)
    val = binary_metrics(data.val.y, val_scores, threshold)
    test_scores = predict(reloaded, data.test)  # the only look at the test split
    test = binary_metrics(data.test.y, test_scores, threshold)

    size = args.image_size
    # save_manifest validates as the server will, so a manifest it would refuse fails here, not at serving.
    save_manifest(Manifest(
        name="pneumonia", version=args.version, task="image_classification",
        description=f"Pediatric chest X-ray: NORMAL vs PNEUMONIA (small CNN trained on "
                    f"{_data_title(data.name)}, {size}x{size} grayscale)",
        labels=list(LABELS), positive_label="PNEUMONIA", threshold=threshold, activation="sigmoid",
        input=ImageContract(height=size, width=size, channels=1, color="grayscale", crop="center_square",
                            resize="bilinear", scale=1 / 255, offset=0.0, layout="NHWC", dtype="float32"),
        source=Artifact(h5.name, sha256_file(h5)),
        training={
            "script": "scripts/training/train_pneumonia.py",
            "command": shlex.join(["python", "scripts/training/train_pneumonia.py", *argv]),
            "data": data.name, "data_sha256": data.sha256, "seed": args.seed,
            "epochs_run": len(history["loss"]),
            "parameters": int(model.count_params()), "threshold_rule": THRESHOLD_RULE,
            "framework": f"tensorflow {tf.__version__} / keras {keras.__version__}",
        },
        metrics={
            "test": {key: test[key] for key in ("accuracy", "auc", "sensitivity", "specificity", "n")},
            "val": {key: val[key] for key in ("accuracy", "auc")},
        },
        folder=out,
    ))
    metrics = {
        "model": f"pneumonia {args.version}", "labels": list(LABELS), "positive_label": "PNEUMONIA",
        "threshold": threshold, "threshold_rule": THRESHOLD_RULE,
        "confusion_matrix_layout": "[[tn, fp], [fn, tp]]: rows = true label, columns = predicted, "
                                   "label order NORMAL, PNEUMONIA",
        "val": val, "test": test,
        "selected_epoch": best_epoch, "epochs_run": len(history["loss"]),
        "parameters": int(model.count_params()), "model_bytes": h5.stat().st_size,
        "training_seconds": round(seconds, 1),
        "anchors": {"source": "MedMNIST v2 benchmark, official PneumoniaMNIST test split",
                    "results": ANCHORS},
    }
    write_json(out / "metrics.json", metrics)
    plot_confusion({"val": val["confusion_matrix"], "test": test["confusion_matrix"]}, LABELS,
                   out / "confusion_matrix.png", threshold)
    plot_roc({"val": (data.val.y, val_scores), "test": (data.test.y, test_scores)}, threshold,
             out / "roc.png", title="ROC, P(PNEUMONIA)")
    plot_training_curves(history, out / "training_curves.png", best_epoch)
    return metrics


def _data_title(name: str) -> str:
    return "PneumoniaMNIST" if name.startswith("pneumoniamnist") else name


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and write the model folder; returns the metrics written to metrics.json."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)  # python, numpy and TensorFlow
    tf.config.experimental.enable_op_determinism()
    data = load_data(args.data, args.image_size, args.limit, args.seed)
    print(f"data {data.name}: train {len(data.train.y)}, val {len(data.val.y)}, test {len(data.test.y)}")
    model = build_model(args.image_size, args.width, args.branches)
    print(f"model: {model.count_params()} parameters")
    started = time.perf_counter()
    history, best_epoch = train(model, data, args)
    seconds = time.perf_counter() - started
    metrics = write_outputs(model, data, args, argv, history, best_epoch, seconds)
    print(f"kept epoch {best_epoch}; threshold {metrics['threshold']:.4f}; "
          f"val acc {metrics['val']['accuracy']:.4f} AUC {metrics['val']['auc']:.4f}; "
          f"test acc {metrics['test']['accuracy']:.4f} AUC {metrics['test']['auc']:.4f}; "
          f"{metrics['model_bytes']} bytes; {seconds:.0f} s → {args.out}")
    return metrics


if __name__ == "__main__":
    main()
