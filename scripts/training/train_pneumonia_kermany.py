"""Train pneumonia 2.x on the full-resolution Kermany training folder and write the served model folder.

Seeded patient-level split of chest_xray_train into train / val / internal test; fit on train with
augmentation and balanced class weights, keep the best val-loss epoch; fit the calibration, the decision
threshold and the out-of-scope threshold on val; compile to ONNX (`slimserve.compiler`, as
`python -m slimserve compile` does) and evaluate the ONNX graph once on the internal test, on the
out-of-scope set and on the 8 sample X-rays. Writes model.h5, model.onnx, manifest.json, metrics.json, plots.

    python -m scripts.training.train_pneumonia_kermany --seed 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from scripts.training import pneumonia_export as export
from scripts.training.calibration import expected_calibration_error, fit_platt, sigmoid
from scripts.training.kermany import kermany_contract, load_kermany
from scripts.training.pneumonia_fit import train
from scripts.training.pneumonia_report import served_outputs, write_report
from scripts.training.train_pneumonia import LABELS
from slimserve.compiler import compile_model
from slimserve.manifest import Artifact, Manifest, load_manifest, save_manifest, sha256_file
from slimserve.model_extras import ActivationMap, Calibration, OutOfScope
from slimserve.paths import REPO_ROOT, shared_data

OOD_STATISTIC = ("squared Mahalanobis distance of the global-average-pooled outputs of every conv stage to the "
                 "training images' (Ledoit-Wolf covariance), divided by the number of features")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=shared_data("chest_xray_train"),
                        help="folder with index.csv (path,label,patient,...) and the images it lists")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--width", type=int, default=16, help="filters of the first stage (x2, x4 later)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak of the cosine schedule")
    parser.add_argument("--ood-val-refusal", type=float, default=0.01,
                        help="largest fraction of val X-rays the out-of-scope threshold may refuse")
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--out", type=Path, help="default: artifacts/models/pneumonia/<version>/")
    parser.add_argument("--limit", type=int, help="use at most N images in all (smoke tests)")
    args = parser.parse_args(argv)
    args.out = args.out or REPO_ROOT / "artifacts" / "models" / "pneumonia" / args.version
    return args


def ood_threshold(val_distances: np.ndarray, refusal: float) -> float:
    """The smallest threshold that refuses (distance > threshold) at most `refusal` of the val X-rays."""
    ordered = np.sort(np.asarray(val_distances, dtype=np.float64))[::-1]
    allowed = int(np.floor(refusal * len(ordered)))
    return float(ordered[min(allowed, len(ordered) - 1)])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, calibrate, export, compile and evaluate; returns what metrics.json holds."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    data = load_kermany(args.data, args.image_size, args.seed, args.limit)
    print(f"data {data.name}: train {len(data.train.y)}, val {len(data.val.y)}, test {len(data.test.y)}")
    network = export.build_network(args.image_size, args.width)
    history, best_epoch = train(network, data, args, from_logits=True)

    val_logits = network.predict(data.val.x, batch_size=256, verbose=0).ravel()
    scale, bias = fit_platt(val_logits, data.val.y)
    temperature_scale, _ = fit_platt(val_logits, data.val.y, with_bias=False)
    features = export.feature_model(network).predict(data.train.x, batch_size=256, verbose=0)
    mean, whiten = export.fit_mahalanobis(features)
    served = export.serving_model(network, scale, bias, mean, whiten)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    h5 = out / "model.h5"
    served.save(h5, include_optimizer=False)
    size = args.image_size
    save_manifest(Manifest(
        name="pneumonia", version=args.version, task="image_classification",
        description=f"Pediatric chest X-ray: NORMAL vs PNEUMONIA (small CNN trained on the full-resolution "
                    f"Kermany training images, whole image resized to {size}x{size} grayscale; calibrated; "
                    f"refuses images unlike chest X-rays)",
        labels=list(LABELS), positive_label="PNEUMONIA", activation="sigmoid",
        input=kermany_contract(size), source=Artifact(h5.name, sha256_file(h5)),
        onnx={"probabilities_output": "probability"}, folder=out,
    ))
    manifest = compile_model(h5)  # the same call as `python -m slimserve compile model.h5`
    seconds = time.perf_counter() - started

    onnx = manifest.compiled_path
    val_out, test_out = served_outputs(onnx, data.val.x), served_outputs(onnx, data.test.x)
    from scripts.training.common import youden_threshold  # here: the threshold is on served probabilities

    threshold = round(youden_threshold(data.val.y, val_out["probability"]), 6)
    ood_cut = ood_threshold(val_out["ood_distance"], args.ood_val_refusal)
    test_logits = network.predict(data.test.x, batch_size=256, verbose=0).ravel()
    calibration_report = {
        "bins": 15, "fitted_on": "val",
        "test_ece_uncalibrated": round(expected_calibration_error(data.test.y, sigmoid(test_logits)), 4),
        "test_ece_temperature_only": round(expected_calibration_error(
            data.test.y, sigmoid(temperature_scale * test_logits)), 4),
        "temperature": round(1 / temperature_scale, 6),
        "test_ece_served": round(expected_calibration_error(data.test.y, test_out["probability"]), 4),
        "_test_raw": sigmoid(test_logits),  # for the reliability plot; not written to metrics.json
    }
    manifest = replace(
        load_manifest(out), threshold=threshold,
        calibration=Calibration(method="platt", scale=scale, bias=bias, fitted_on="val"),
        ood=OutOfScope(output="ood_distance", threshold=ood_cut, statistic=OOD_STATISTIC),
        cam=ActivationMap(output="cam", units="logit contribution per cell (their mean is the logit)"),
    )
    metrics = write_report(manifest, data, args, argv, history, best_epoch, seconds,
                           {"val": val_out, "test": test_out}, calibration_report, network.count_params())
    print(f"kept epoch {best_epoch}; threshold {threshold}; test {metrics['test']}; "
          f"out of scope {metrics['out_of_scope']['refused_fraction']}; {seconds:.0f} s -> {out}")
    return metrics


if __name__ == "__main__":
    main()
