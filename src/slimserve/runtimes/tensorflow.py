"""TensorFlow/Keras runtime: loads the `.h5` itself. For parity tests and the baseline benchmark only."""

from __future__ import annotations

import numpy as np

from slimserve.errors import ModelConfigError
from slimserve.manifest import Manifest
from slimserve.runtimes.base import RuntimeOptions, to_class_probabilities


def load_keras_model(path: str):  # -> keras.Model (untyped: TensorFlow is optional)
    """Load a Keras 3 or legacy Keras 2 `.h5` for inference (`compile=False`)."""
    import tensorflow as tf

    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as keras3_error:  # legacy files can need the Keras 2 loader
        try:
            import tf_keras
        except ImportError:
            raise ModelConfigError(f"cannot load {path}: {keras3_error}") from None
        try:
            return tf_keras.models.load_model(path, compile=False)
        except Exception as exc:
            raise ModelConfigError(f"cannot load {path}: {exc}") from None


class TensorflowRuntime:
    """Runs the source `.h5` with TensorFlow."""

    name = "tensorflow"

    def __init__(self, manifest: Manifest, options: RuntimeOptions) -> None:
        self.manifest = manifest
        self.options = options
        self._model = None

    def load(self) -> None:
        """Import TensorFlow and load the `.h5`."""
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.options.intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(self.options.inter_op_threads)
        except RuntimeError:
            pass  # TensorFlow was already initialised in this process; its thread pools are fixed now
        self._model = load_keras_model(str(self.manifest.source_path))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch."""
        if self._model is None:
            raise RuntimeError("runtime not loaded")
        wanted = self.manifest.onnx.get("probabilities_output")  # a graph with more outputs (OOD, CAM) names it
        raw = self.predict_named(batch)[wanted] if wanted else np.asarray(self._model(batch, training=False))
        return to_class_probabilities(raw, self.manifest.activation)

    def predict_named(self, batch: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The model's outputs by name, as ONNX Runtime names them (the Keras output names): those in `names`,
        else all of them (Keras computes them all either way)."""
        if self._model is None:
            raise RuntimeError("runtime not loaded")
        raw = self._model(batch, training=False)
        if not isinstance(raw, dict):
            values = raw if isinstance(raw, list | tuple) else [raw]
            raw = dict(zip(self._model.output_names, values, strict=True))
        return {name: np.asarray(value) for name, value in raw.items() if not names or name in names}
