"""ONNX Runtime: the serving runtime (about 80 MB where TensorFlow needs about 565 MB)."""

from __future__ import annotations

import numpy as np

from slimserve.errors import ModelConfigError
from slimserve.manifest import Manifest
from slimserve.runtimes.base import RuntimeOptions, to_class_probabilities


class OnnxRuntime:
    """Runs the compiled `.onnx` artifact named in the manifest."""

    name = "onnx"

    def __init__(self, manifest: Manifest, options: RuntimeOptions) -> None:
        self.manifest = manifest
        self.options = options
        self._session = None
        self._input_name = ""
        self._output_names: list[str] = []

    def load(self) -> None:
        """Create the inference session with a thread setup that suits a tiny CPU quota."""
        import onnxruntime as ort

        path = self.manifest.compiled_path
        if path is None or not path.is_file():
            raise ModelConfigError(f"compiled model missing for {self.manifest.name}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.intra_op_threads
        opts.inter_op_num_threads = self.options.inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spinning = "1" if self.options.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        # The arena keeps freed buffers forever; for small inputs its growth costs more RSS than it saves.
        opts.enable_cpu_mem_arena = False
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelConfigError(f"cannot load {path.name}: {exc}") from None
        self._input_name = session.get_inputs()[0].name
        self._output_names = [output.name for output in session.get_outputs()]
        # Tabular (skl2onnx) graphs also output the label; ask only for the probabilities.
        wanted = self.manifest.onnx.get("probabilities_output")
        self._outputs = [wanted] if wanted else [session.get_outputs()[0].name]
        self._session = session

    def predict(self, inputs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities for a float32 image batch or a dict of named (rows, 1) columns."""
        if self._session is None:
            raise RuntimeError("runtime not loaded")
        feed = inputs if isinstance(inputs, dict) else {self._input_name: inputs}
        (raw,) = self._session.run(self._outputs, feed)
        return to_class_probabilities(raw, self.manifest.activation)

    def predict_named(self, batch: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """The graph's outputs by name (probability, and e.g. `ood_distance` and `cam`) for an image batch:
        those in `names`, else all of them."""
        if self._session is None:
            raise RuntimeError("runtime not loaded")
        names = names or self._output_names  # read once at load: get_outputs() builds new objects on every call
        return dict(zip(names, self._session.run(names, {self._input_name: batch}), strict=True))
