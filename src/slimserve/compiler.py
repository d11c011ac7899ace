"""Compile a Keras `.h5` to ONNX beside it and record both sha256s in the manifest. Needs TensorFlow."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from slimserve.errors import ModelConfigError
from slimserve.manifest import (
    COLOR_CHANNELS,
    MANIFEST_NAME,
    Artifact,
    ImageContract,
    Manifest,
    compiled_record,
    load_manifest,
    parse_manifest,
    save_manifest,
    sha256_file,
)
from slimserve.parity import onnx_max_abs_diff

# Above this the compiled graph is not the model we trained; float32 round-off is around 1e-7.
MAX_PARITY_DIFF = 1e-4
DEFAULT_OPSET = 17


def compile_model(h5_path: Path, overrides: dict[str, Any] | None = None, opset: int = DEFAULT_OPSET) -> Manifest:
    """Convert `h5_path` to `<stem>.onnx`, check parity with TensorFlow, and update the manifest."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    from slimserve.runtimes.tensorflow import load_keras_model

    h5_path = Path(h5_path).resolve()
    if not h5_path.is_file():
        raise ModelConfigError(f"no such file: {h5_path}")
    model = load_keras_model(str(h5_path))
    manifest = _manifest_for(h5_path, model, overrides or {})
    shape = (None, *manifest.input.shape)
    signature = (tf.TensorSpec(shape, tf.float32, name="input"),)

    # A tf.function with an explicit signature converts legacy Keras 2 files where from_keras fails.
    # Several outputs (probability, ood_distance, cam) are returned as a dict so ONNX keeps their Keras names.
    names = list(model.output_names) if len(model.outputs) > 1 else []

    @tf.function(input_signature=signature)
    def forward(x):
        outputs = model(x, training=False)
        return dict(zip(names, outputs, strict=True)) if names else outputs

    onnx_path = h5_path.with_suffix(".onnx")
    partial = onnx_path.with_suffix(".onnx.partial")
    tf2onnx.convert.from_function(forward, input_signature=signature, opset=opset, output_path=str(partial))
    batch = _parity_batch(manifest.input)
    diff = _max_diff(partial, batch, model(batch, training=False), names)
    if diff > MAX_PARITY_DIFF:
        partial.unlink(missing_ok=True)
        raise ModelConfigError(f"ONNX output differs from TensorFlow by {diff:.2e} (limit {MAX_PARITY_DIFF})")
    os.replace(partial, onnx_path)
    source_sha = sha256_file(h5_path)
    manifest = replace(
        manifest,
        source=Artifact(file=h5_path.name, sha256=source_sha),
        compiled=compiled_record(onnx_path, source_sha256=source_sha, opset=opset, max_abs_diff=diff,
                                 tool=f"tf2onnx {tf2onnx.__version__} (tensorflow {tf.__version__})"),
    )
    save_manifest(manifest)
    return manifest


def _manifest_for(h5_path: Path, model: Any, overrides: dict[str, Any]) -> Manifest:
    """The existing manifest with overrides applied, or a new one from the overrides and the model."""
    in_shape = tuple(model.inputs[0].shape)
    if len(in_shape) != 4:
        raise ModelConfigError(f"expected an image model with input (batch, height, width, channels), got {in_shape}")
    _, height, width, channels = in_shape
    units = int(model.outputs[0].shape[-1])
    if (h5_path.parent / MANIFEST_NAME).is_file():
        base = load_manifest(h5_path).to_dict()
        if base["source"]["file"] != h5_path.name:
            raise ModelConfigError(f"{MANIFEST_NAME} in {h5_path.parent} belongs to {base['source']['file']}: "
                                   "keep one model per folder")
    else:
        base = {"name": _default_name(h5_path), "version": "1", "task": "image_classification",
                "labels": ["NORMAL", "PNEUMONIA"], "input": {},
                "activation": "sigmoid" if units == 1 else "softmax"}
    contract = {**ImageContract(height=height or 0, width=width or 0, channels=channels or 1,
                                color="rgb" if channels == 3 else "grayscale")._asdict(),
                **base.get("input", {}), **{k: v for k, v in overrides.items() if k in ImageContract._fields}}
    _check_contract(contract, height, width, channels)
    base.update({k: v for k, v in overrides.items() if k not in ImageContract._fields})
    base["input"] = contract
    base["source"] = {"file": h5_path.name, "sha256": sha256_file(h5_path)}
    base["compiled"] = None
    if base.get("activation") == "softmax" and len(base["labels"]) != units:
        raise ModelConfigError(f"the model has {units} outputs but {len(base['labels'])} labels were given")
    return parse_manifest(base, h5_path.parent)


def _check_contract(contract: dict[str, Any], height: int | None, width: int | None,
                    channels: int | None) -> None:
    for key, fixed in (("height", height), ("width", width)):
        if fixed and contract[key] != fixed:
            raise ModelConfigError(f"the model's input {key} is {fixed}, not {contract[key]}")
        if not contract[key]:
            raise ModelConfigError(f"the model does not fix its input {key}: pass --image-size")
    if channels and COLOR_CHANNELS[contract["color"]] != channels:
        raise ModelConfigError(f"the model takes {channels} channel(s); --color {contract['color']} does not fit")
    contract["channels"] = COLOR_CHANNELS[contract["color"]]


def _max_diff(onnx_path: Path, batch: np.ndarray, expected: Any, names: list[str]) -> float:
    """Max |Δ| over every output; relative for outputs larger than 1 (a distance can reach 1e4 in float32)."""
    if not names:
        return onnx_max_abs_diff(onnx_path, batch, np.asarray(expected))
    diffs = []
    for name, value in zip(names, expected, strict=True):
        value = np.asarray(value)
        scale = max(1.0, float(np.max(np.abs(value))))
        diffs.append(onnx_max_abs_diff(onnx_path, batch, value, output=name) / scale)
    return max(diffs)


def _default_name(h5_path: Path) -> str:
    stem = h5_path.parent.name if h5_path.stem == "model" else h5_path.stem
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-._")
    return name[:64] or "model"


def _parity_batch(contract: ImageContract) -> np.ndarray:
    """A random batch spanning the model's input range (every pixel value, scaled as served)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(8, *contract.shape)).astype(np.float32)
    return pixels * np.float32(contract.scale) + np.float32(contract.offset)
