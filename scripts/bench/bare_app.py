"""Reference app for the benchmark: bare Flask + Pillow + numpy + ONNX Runtime on the same model and preprocessing.

What slimserve's cold start and CPU per `/predict` are judged against (issue 12): the same `.onnx` beside
MODEL_PATH, the same session options, the same JPEG draft decode and resize — and nothing else (no
validation, limits, metrics, audit or schema).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image

_MODEL = Path(os.environ["MODEL_PATH"])
_MANIFEST = json.loads(_MODEL.with_name("manifest.json").read_text())
_CONTRACT = _MANIFEST["input"]
_THRESHOLD = float(_MANIFEST.get("threshold", 0.5))
_SIDE = (_CONTRACT["width"], _CONTRACT["height"])
_OPTIONS = ort.SessionOptions()
_OPTIONS.intra_op_num_threads = 1
_OPTIONS.inter_op_num_threads = 1
_OPTIONS.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
_OPTIONS.add_session_config_entry("session.intra_op.allow_spinning", "0")
_OPTIONS.enable_cpu_mem_arena = False
_SESSION = ort.InferenceSession(str(_MODEL.with_suffix(".onnx")), sess_options=_OPTIONS,
                                providers=["CPUExecutionProvider"])
_INPUT = _SESSION.get_inputs()[0].name
_OUTPUT = _MANIFEST.get("onnx", {}).get("probabilities_output") or _SESSION.get_outputs()[0].name

app = Flask(__name__)


@app.get("/health")
def health():
    """Liveness, as the real app answers it."""
    return {"status": "ok"}


@app.post("/predict")
def predict():
    """Draft JPEG decode, grayscale, bilinear resize, scale, one ONNX run: the model's work and no more."""
    upload = request.files["file"]
    image = Image.open(io.BytesIO(upload.read()))
    image.draft("L", (4 * _SIDE[0], 4 * _SIDE[1]))
    pixels = np.asarray(image.convert("L").resize(_SIDE, Image.Resampling.BILINEAR), dtype=np.float32)
    batch = (pixels * np.float32(_CONTRACT["scale"]))[np.newaxis, :, :, np.newaxis]
    probability = float(_SESSION.run([_OUTPUT], {_INPUT: batch})[0].ravel()[-1])
    return jsonify(filename=upload.filename, prediction="PNEUMONIA" if probability >= _THRESHOLD else "NORMAL",
                   probability=round(probability, 4))
