"""Runtimes: the small interface (`load`, `predict`) that executes a model, chosen by an explicit table."""

from __future__ import annotations

from collections.abc import Callable

from slimserve.errors import ModelConfigError
from slimserve.manifest import Manifest
from slimserve.runtimes.base import Runtime, RuntimeOptions

RuntimeFactory = Callable[[Manifest, RuntimeOptions], Runtime]


def _onnx(manifest: Manifest, options: RuntimeOptions) -> Runtime:
    from slimserve.runtimes.onnx import OnnxRuntime

    return OnnxRuntime(manifest, options)


def _tensorflow(manifest: Manifest, options: RuntimeOptions) -> Runtime:
    # Only for parity tests and the baseline benchmark: TensorFlow is not a runtime requirement.
    from slimserve.runtimes.tensorflow import TensorflowRuntime

    return TensorflowRuntime(manifest, options)


# Explicit table: a manifest or a variable can only pick one of these names, never import arbitrary code.
RUNTIMES: dict[str, RuntimeFactory] = {"onnx": _onnx, "tensorflow": _tensorflow}


def create_runtime(name: str, manifest: Manifest, options: RuntimeOptions,
                   table: dict[str, RuntimeFactory] | None = None) -> Runtime:
    """Build (not load) the runtime called `name` for a model."""
    runtimes = RUNTIMES if table is None else table
    try:
        factory = runtimes[name]
    except KeyError:
        raise ModelConfigError(f"unknown runtime {name!r}; choose one of {sorted(runtimes)}") from None
    return factory(manifest, options)


__all__ = ["RUNTIMES", "Runtime", "RuntimeFactory", "RuntimeOptions", "create_runtime"]
