"""Add a drift reference profile to trained models without retraining them.

For each model it re-creates the training split from the manifest's own record (data file, row filter,
seed, test size), bins the training rows' features (slimserve.drift.profile) and the served ONNX model's
predictions on them, checks the model file is the one the manifest names, and writes the profile into the
manifest as `drift_reference`. Image models trained on PneumoniaMNIST get bins of two image statistics
(mean and standard deviation of the model-ready pixels) from the train split instead.
Run: `python -m scripts.training.drift_reference [model folders...]`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from scripts.training.tabular import SHARED, ModelSpec, load_table
from slimserve.drift.profile import build_image_profile, build_profile, profile_to_dict
from slimserve.manifest import Manifest, load_manifest, save_manifest
from slimserve.paths import BUNDLED_MODELS
from slimserve.registry import verify_artifacts
from slimserve.runtimes import RuntimeOptions, create_runtime
from slimserve.tabular import build_table_schema

DATA_FOLDERS = {"heart.csv": "heart_failure", "diabetes_prediction_dataset.csv": "diabetes",
                "AIDS_Classification.csv": "aids", "camda2025_training_mic_sir.csv": "antibiotic"}


def spec_of(manifest: Manifest) -> ModelSpec:
    """The ModelSpec the manifest's training script used for this model."""
    module = importlib.import_module(manifest.training["script"].removesuffix(".py").replace("/", "."))
    if hasattr(module, "SPEC"):
        return module.SPEC
    return module.spec_for(manifest.training["rows"]["whonet_code"])  # one script, one model per antibiotic


def training_split(manifest: Manifest):
    """(X_train, X_test, y_train, y_test) exactly as training made them; refuses changed data."""
    data = SHARED / "data" / DATA_FOLDERS[manifest.training["data"]] / manifest.training["data"]
    if hashlib.sha256(data.read_bytes()).hexdigest() != manifest.training["data_sha256"]:
        raise SystemExit(f"{data} is not the file {manifest.name} was trained on")
    spec = spec_of(manifest)
    X, y = load_table(data, spec)
    split = train_test_split(X, y, test_size=spec.test_size, stratify=y, random_state=manifest.training["seed"])
    if len(split[0]) != manifest.training["n_train"]:
        raise SystemExit(f"{manifest.name}: the split has {len(split[0])} training rows, not "
                         f"{manifest.training['n_train']}")
    return split


def served_runtime(manifest: Manifest):
    """The ONNX runtime the server would load, after the same artifact checks (sha256s) it makes."""
    runtime = create_runtime("onnx", verify_artifacts(manifest, "onnx", auto_compile=False), RuntimeOptions())
    runtime.load()
    return runtime


def predict(manifest: Manifest, frame) -> np.ndarray:
    """The served ONNX model's probabilities for a frame of training rows."""
    runtime = served_runtime(manifest)
    columns = build_table_schema(manifest.name, manifest.features).load(
        {f.name: frame[f.name].tolist() for f in manifest.features})
    return np.asarray(runtime.predict(columns))


def add_reference(folder: Path) -> Path:
    """Compute the profile of one model folder and write it into its manifest."""
    manifest = load_manifest(folder)
    X_train, _, _, _ = training_split(manifest)
    columns = {f.name: X_train[f.name].to_numpy() for f in manifest.features}
    profile = build_profile(manifest.features, columns, predict(manifest, X_train), manifest.labels,
                            manifest.positive_label)
    return save_manifest(replace(manifest, drift_reference=profile_to_dict(profile)))


def add_image_reference(folder: Path, batch_size: int = 512) -> Path:
    """The same for an image model trained on PneumoniaMNIST: its train split, scaled as the manifest says."""
    manifest = load_manifest(folder)
    data = SHARED / "data" / "pneumonia" / manifest.training["data"]
    if hashlib.sha256(data.read_bytes()).hexdigest() != manifest.training["data_sha256"]:
        raise SystemExit(f"{data} is not the file {manifest.name} was trained on")
    with np.load(data, allow_pickle=False) as arrays:
        images = arrays["train_images"]
    contract = manifest.input
    if images.shape[1:3] != (contract.height, contract.width) or contract.channels != 1:
        raise SystemExit(f"{manifest.name}: the npz images do not match its input contract")
    batch = images[..., np.newaxis].astype(np.float32) * np.float32(contract.scale) + np.float32(contract.offset)
    runtime = served_runtime(manifest)
    probabilities = np.concatenate([runtime.predict(batch[i:i + batch_size])
                                    for i in range(0, len(batch), batch_size)])
    profile = build_image_profile(batch, probabilities, manifest.labels, manifest.positive_label)
    return save_manifest(replace(manifest, drift_reference=profile_to_dict(profile)))


def main(argv: list[str] | None = None) -> None:
    """Add references to the given model folders (default: every bundled tabular model)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    args = parser.parse_args(argv)
    folders = args.folders or sorted(p.parent for p in BUNDLED_MODELS.rglob("manifest.json"))
    for folder in folders:
        manifest = load_manifest(folder)
        if manifest.features is not None:
            print(add_reference(folder))
        elif manifest.training.get("data") == "pneumoniamnist.npz":
            print(add_image_reference(folder))


if __name__ == "__main__":
    main()
