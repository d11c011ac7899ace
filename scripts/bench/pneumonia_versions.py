"""pneumonia 1.0.0 vs 2.0.0 on the 8 sample X-rays: predictions, and CPU per prediction on one core.

CPU is process time (decode + preprocess + ONNX Runtime with one thread, as served; for 2.0.0 also the
out-of-scope check, and separately the CAM PNG), so other load on the machine barely moves it.

    python -m scripts.bench.pneumonia_versions [--repeats 25]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from slimserve.explain import cam_png
from slimserve.imaging import ImageLimits, image_to_input
from slimserve.manifest import load_manifest
from slimserve.out_of_scope import is_out_of_scope, ood_score
from slimserve.paths import REPO_ROOT, shared_data
from slimserve.runtimes.base import RuntimeOptions
from slimserve.runtimes.onnx import OnnxRuntime
from slimserve.service import decide

MODELS = REPO_ROOT / "artifacts" / "models" / "pneumonia"
OUT = REPO_ROOT / "artifacts" / "bench" / "pneumonia_versions.json"


def load(version: str) -> tuple[Any, OnnxRuntime]:
    """The manifest and a loaded one-thread ONNX runtime of a pneumonia version."""
    manifest = load_manifest(MODELS / version)
    runtime = OnnxRuntime(manifest, RuntimeOptions())
    runtime.load()
    return manifest, runtime


def answer(manifest: Any, runtime: OnnxRuntime, data: bytes) -> dict[str, Any]:
    """What the server would answer: a label and P(PNEUMONIA), or a refusal."""
    batch = image_to_input(data, manifest.input, ImageLimits())
    if manifest.ood is None:
        label, probability = decide(manifest, runtime.predict(batch)[0])
        return {"prediction": label, "probability": probability}
    outputs = runtime.predict_named(batch)
    label, probability = decide(manifest, runtime.predict(batch)[0])
    return {"prediction": label, "probability": probability,
            "ood_distance": round(ood_score(manifest, outputs), 4), "refused": is_out_of_scope(manifest, outputs)}


def cpu_ms(fn: Any, uploads: list[bytes], repeats: int) -> float:
    """Mean process-CPU milliseconds of fn(upload) over `repeats` passes over the uploads."""
    for data in uploads:
        fn(data)
    started = time.process_time()
    for _ in range(repeats):
        for data in uploads:
            fn(data)
    return round((time.process_time() - started) * 1000 / (repeats * len(uploads)), 3)


def measure(version: str, paths: list[Any], uploads: list[bytes], repeats: int) -> dict[str, Any]:
    """Answers for every sample and CPU ms per served prediction of one version."""
    manifest, runtime = load(version)
    limits = ImageLimits()
    entry: dict[str, Any] = {"answers": {path.name: answer(manifest, runtime, data)
                                         for path, data in zip(paths, uploads, strict=True)}}

    def served(data: bytes) -> Any:
        if manifest.ood is None:
            return False, runtime.predict(image_to_input(data, manifest.input, limits))
        outputs = runtime.predict_named(image_to_input(data, manifest.input, limits))
        return is_out_of_scope(manifest, outputs), outputs

    entry["cpu_ms_per_predict"] = cpu_ms(served, uploads, repeats)
    if manifest.cam is not None:
        sizes = {id(data): _size(data) for data in uploads}
        entry["cpu_ms_per_predict_with_cam_png"] = cpu_ms(
            lambda data: cam_png(manifest, served(data)[1], sizes[id(data)]), uploads, repeats)
    entry["onnx_bytes"] = manifest.compiled_path.stat().st_size
    return entry


def main() -> dict[str, Any]:
    """Measure both versions and write artifacts/bench/pneumonia_versions.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    paths = sorted(shared_data("pneumonia", "samples").glob("*.jpeg"))
    uploads = [path.read_bytes() for path in paths]
    report: dict[str, Any] = {"samples": [path.name for path in paths], "repeats": args.repeats, "versions": {}}
    for version in ("1.0.0", "2.0.0"):
        report["versions"][version] = measure(version, paths, uploads, args.repeats)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).size


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
