"""A runtime wrapper that times the model load and shows every served prediction to observers (drift).

It sits between the registry and the real runtime, so the request path (views, service) needs no hook:
whatever reaches `runtime.predict` once the model is ready is a client's prediction; the registry's
warm-up prediction runs before the entry is marked loaded and is not shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from slimserve.out_of_scope import is_out_of_scope
from slimserve.registry import ModelEntry, ModelRegistry
from slimserve.runtimes.base import to_class_probabilities

log = logging.getLogger(__name__)
# (entry, the inputs the runtime got, the (N, classes) probabilities it returned)
Observer = Callable[[ModelEntry, Any, np.ndarray], None]


class ObservedRuntime:
    """Delegates to the wrapped runtime; records load time and calls observers after each prediction."""

    def __init__(self, entry: ModelEntry) -> None:
        self.inner = entry.runtime
        self.entry = entry
        self.observers: list[Observer] = []
        self.load_seconds: float | None = None

    @property
    def name(self) -> str:
        """The wrapped runtime's name."""
        return self.inner.name

    def load(self) -> None:
        """Load the wrapped runtime and remember how long it took."""
        started = time.perf_counter()
        self.inner.load()
        self.load_seconds = time.perf_counter() - started

    def predict(self, inputs: Any) -> np.ndarray:
        """Predict with the wrapped runtime, then show inputs and output to every observer."""
        probabilities = self.inner.predict(inputs)
        self._notify(inputs, probabilities)
        return probabilities

    def predict_named(self, batch: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs by name (image models with extra outputs); observers see what will be answered."""
        outputs = self.inner.predict_named(batch, names)
        manifest = self.entry.manifest
        if self.observers and not is_out_of_scope(manifest, outputs):  # a refused image gets no prediction
            raw = outputs[manifest.onnx.get("probabilities_output") or next(iter(outputs))]
            self._notify(batch, to_class_probabilities(raw, manifest.activation))
        return outputs

    def _notify(self, inputs: Any, probabilities: np.ndarray) -> None:
        if self.observers and self.entry.loaded.is_set():
            for observer in self.observers:
                try:
                    observer(self.entry, inputs, probabilities)
                except Exception:  # monitoring must never fail a prediction
                    log.exception("prediction observer failed for %s", self.entry.manifest.name)

    def __getattr__(self, attribute: str) -> Any:
        # Anything else a runtime offers (e.g. an explanation method) stays reachable.
        return getattr(self.inner, attribute)


def observe_registry(registry: ModelRegistry) -> dict[str, ObservedRuntime]:
    """Wrap every entry's runtime (before loading starts); returns the wrappers by model name."""
    wrapped = {}
    for name, entry in registry.entries.items():
        if not isinstance(entry.runtime, ObservedRuntime):
            entry.runtime = ObservedRuntime(entry)
        wrapped[name] = entry.runtime
    return wrapped
