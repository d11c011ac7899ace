"""Reference app for the benchmark: bare Flask + Pillow + numpy, no model — the framework's cold-start floor."""

from __future__ import annotations

import io

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

app = Flask(__name__)


@app.get("/health")
def health():
    """Liveness, as the real app answers it."""
    return {"status": "ok"}


@app.post("/predict")
def predict():
    """Draft-mode JPEG decode to 28×28 grayscale and a dummy score: the image work without a model."""
    upload = request.files["file"]
    image = Image.open(io.BytesIO(upload.read()))
    image.draft("L", (112, 112))
    pixels = np.asarray(image.convert("L").resize((28, 28)), dtype=np.float32) / 255
    return jsonify(filename=upload.filename, prediction="NORMAL", probability=float(pixels.mean()))
