"""The registry: finds models under MODEL_PATH, checks their artifacts, loads runtimes and tracks readiness."""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimserve.errors import ModelConfigError, NotFound, ServiceUnavailable
from slimserve.manifest import MANIFEST_NAME, Manifest, load_manifest, manifest_path_for, sha256_file
from slimserve.runtimes import Runtime, RuntimeFactory, RuntimeOptions, create_runtime

if TYPE_CHECKING:
    from slimserve.tabular import TableSchema

log = logging.getLogger(__name__)
IMAGE, TABLE = "image", "table"  # the input kinds a model can take


@dataclass
class ModelEntry:
    """One registered model: its manifest, its runtime and whether it is ready."""

    manifest: Manifest
    runtime: Runtime
    loaded: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    table_schema: TableSchema | None = None

    def __post_init__(self) -> None:
        if self.manifest.features:
            from slimserve.tabular import build_table_schema  # marshmallow fields per column: tables only

            self.table_schema = build_table_schema(self.manifest.name, self.manifest.features)

    @property
    def kind(self) -> str:
        """The model's input kind: `table` (named columns) or `image`; the service dispatches on it."""
        return TABLE if self.manifest.features is not None else IMAGE

    @property
    def is_tabular(self) -> bool:
        """Whether the model takes named columns (rather than an image)."""
        return self.kind == TABLE

    @property
    def state(self) -> str:
        """`loading`, `ready` (loaded and warmed up) or `failed`."""
        if not self.loaded.is_set():
            return "loading"
        return "failed" if self.error is not None else "ready"

    @property
    def ready(self) -> bool:
        """True once the runtime loaded and answered a warm-up prediction."""
        return self.state == "ready"

    def load(self) -> None:
        """Load the runtime and warm it up, recording any failure instead of raising."""
        try:
            self.runtime.load()
            # One prediction allocates the session's buffers now rather than in the first request.
            self.runtime.predict(warmup_input(self.manifest))
        except Exception as exc:
            self.error = str(exc)
            log.error("model %s failed to load: %s", self.manifest.name, exc)
        finally:
            self.loaded.set()

    def wait_ready(self, timeout: float) -> None:
        """Block until the model is ready, or raise 503 after `timeout` seconds."""
        if not self.loaded.wait(timeout):
            raise ServiceUnavailable("the model is still loading; retry shortly", code="model_loading")
        if self.error is not None:
            raise ServiceUnavailable("the model failed to load", code="model_unavailable")


def warmup_input(manifest: Manifest) -> np.ndarray | dict[str, np.ndarray]:
    """A valid one-row input for the model, made from its manifest."""
    if manifest.features is None:
        return np.zeros((1, *manifest.input.shape), dtype=np.float32)
    row = {}
    for feature in manifest.features:
        if feature.type == "category":
            row[feature.name] = np.array([[feature.categories[0]]], dtype=object)
        else:
            value = min(max(0.0, feature.minimum or 0.0), feature.maximum if feature.maximum is not None else 0.0)
            row[feature.name] = np.array([[value]], dtype=np.float32)
    return row


class ModelRegistry:
    """Name → version → model entry, with a default version per name and a default model for `/predict`."""

    def __init__(self, entries: list[ModelEntry], default: str | None = None,
                 preferred: dict[str, str] | None = None) -> None:
        if not entries:
            raise ModelConfigError("no models to serve")
        self.versions: dict[str, dict[str, ModelEntry]] = {}
        for entry in entries:
            versions = self.versions.setdefault(entry.manifest.name, {})
            if entry.manifest.version in versions:
                raise ModelConfigError(f"two models are {entry.manifest.name} {entry.manifest.version}")
            versions[entry.manifest.version] = entry
        preferred = preferred or {}
        for name, version in preferred.items():
            if version not in self.versions.get(name, {}):
                raise ModelConfigError(f"SLIMSERVE_MODEL_VERSIONS names {name} {version}, which is not served")
        # Each name's default version: the one asked for, else the newest.
        self.entries = {name: versions[preferred.get(name) or max(versions, key=version_key)]
                        for name, versions in self.versions.items()}
        self.default_name = default or entries[0].manifest.name
        if self.default_name not in self.entries:
            raise ModelConfigError(f"default model {self.default_name!r} is not among the loaded models")

    def get(self, name: str | None = None, version: str | None = None) -> ModelEntry:
        """The entry called `name` (default: the default model) at `version` (default: its default version)."""
        try:
            entry = self.entries[name or self.default_name]
        except KeyError:
            raise NotFound("no model with that name", code="model_not_found", field="name") from None
        if version is None:
            return entry
        try:
            return self.versions[entry.manifest.name][version]
        except KeyError:
            raise NotFound("no such version of this model", code="version_not_found", field="version") from None

    def all_entries(self) -> list[ModelEntry]:
        """Every served version of every model."""
        return [entry for versions in self.versions.values() for entry in versions.values()]

    def load_all(self, background: bool) -> threading.Thread | None:
        """Load every runtime, in a daemon thread when `background` (so /health answers meanwhile)."""
        def work() -> None:
            # Default versions first: they answer the short routes.
            for entry in sorted(self.all_entries(), key=lambda e: e is not self.entries[e.manifest.name]):
                entry.load()

        if not background:
            work()
            return None
        thread = threading.Thread(target=work, name="slimserve-model-loader", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        """True when every version of every model is ready."""
        return all(entry.ready for entry in self.all_entries())


def version_key(version: str) -> tuple:
    """Order versions numerically where they are numbers (`10.0.0` after `9.1.0`)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.+-]", version))


def discover_manifests(model_path: Path) -> list[Path]:
    """Manifest files for MODEL_PATH: a model file, a model folder, or a folder of model folders."""
    if not model_path.exists():
        raise ModelConfigError(f"MODEL_PATH does not exist: {model_path}")
    if model_path.is_file() or (model_path / MANIFEST_NAME).is_file():
        return [model_path]
    found = sorted(p.parent for p in model_path.rglob(MANIFEST_NAME))
    if not found:
        raise ModelConfigError(f"no {MANIFEST_NAME} under {model_path}")
    return found


def verify_artifacts(manifest: Manifest, runtime: str, auto_compile: bool) -> Manifest:
    """Check the source and compiled artifacts agree; compile in a child process when allowed."""
    source = manifest.source_path
    if not source.is_file():
        raise ModelConfigError(f"model file missing: {source}")
    if runtime == "tensorflow" and manifest.features is None:
        return manifest
    compiled = manifest.compiled_path
    if compiled is None or not compiled.is_file():
        if manifest.features is not None or not (auto_compile and tensorflow_available()):
            why = "TensorFlow is not installed here" if auto_compile else "SLIMSERVE_AUTO_COMPILE is off"
            raise ModelConfigError(
                f"{source.name} has no compiled ONNX model and cannot be compiled here ({why}): "
                f"run `python -m slimserve compile {source}` with the training requirements "
                "(make test installs them), then commit or mount the folder it writes"
            )
        compile_in_child(source)
        return verify_artifacts(load_manifest(source), runtime, auto_compile=False)
    actual = sha256_file(source)
    if actual != manifest.compiled.source_sha256:
        raise ModelConfigError(
            f"stale compiled model: {source.name} changed since it was compiled "
            f"(sha256 {actual[:12]}… now, {manifest.compiled.source_sha256[:12]}… when compiled); "
            f"run `python -m slimserve compile {source}` again"
        )
    if sha256_file(compiled) != manifest.compiled.sha256:
        raise ModelConfigError(f"{compiled.name} changed since it was compiled; compile {source.name} again")
    return manifest


def tensorflow_available() -> bool:
    """Whether TensorFlow is installed, found without importing it."""
    return importlib.util.find_spec("tensorflow") is not None


def compile_in_child(source: Path) -> None:
    """Compile a `.h5` in a separate process so the server process never imports TensorFlow."""
    log.warning("compiling %s to ONNX (TensorFlow found; this takes a while)", source.name)
    done = subprocess.run([sys.executable, "-m", "slimserve", "compile", str(source)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ModelConfigError(f"compiling {source.name} failed: {done.stderr.strip()[-2000:]}")


def build_registry(model_path: str, runtime: str = "onnx", *, default: str | None = None,
                   options: RuntimeOptions | None = None, auto_compile: bool = True,
                   runtimes: dict[str, RuntimeFactory] | None = None,
                   repository: str | None = None, versions: dict[str, str] | None = None) -> ModelRegistry:
    """Discover, verify and wrap the model(s) at `model_path`, then every other model under `repository`.

    Runtimes are built, not yet loaded. The first model found at `model_path` is the default unless
    `default` names another; `versions` pins a name's default version (else the newest serves).
    """
    paths = discover_manifests(Path(model_path))
    at_model_path = len(paths)
    seen = {manifest_path_for(p).resolve() for p in paths}
    if repository:
        for path in discover_manifests(Path(repository)):
            if manifest_path_for(path).resolve() not in seen:
                seen.add(manifest_path_for(path).resolve())
                paths.append(path)
    entries = []
    for path in paths:
        manifest = load_manifest(path)
        if path.is_file() and path.resolve() != manifest.source_path.resolve():
            raise ModelConfigError(f"{MANIFEST_NAME} beside {path.name} describes {manifest.source.file}")
        manifest = verify_artifacts(manifest, runtime, auto_compile)
        entries.append(ModelEntry(manifest, create_runtime(runtime, manifest, options or RuntimeOptions(),
                                                           runtimes)))
    # A single model file named by MODEL_PATH is what the operator asked for: it is its name's default version.
    preferred = {entries[0].manifest.name: entries[0].manifest.version} if at_model_path == 1 else {}
    return ModelRegistry(entries, default, {**preferred, **(versions or {})})
