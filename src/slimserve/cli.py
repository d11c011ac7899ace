"""Command line: `python -m slimserve compile|check|predict|import-mlflow|keys|audit|drift …`."""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from slimserve.errors import SlimserveError
from slimserve.manifest import CROPS, RESIZE_METHODS


def _number(text: str) -> float:
    """Accept `0.0039`, `1/255` and the like."""
    return float(Fraction(text))


def _labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(labels) < 2:
        raise argparse.ArgumentTypeError("give at least two comma-separated labels")
    return labels


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="slimserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    comp = sub.add_parser("compile", help="compile a Keras .h5 to ONNX beside it (needs TensorFlow)")
    comp.add_argument("model", type=Path, help="path to the .h5 file")
    comp.add_argument("--name", help="model name (default: from the manifest, the folder or the file)")
    comp.add_argument("--version", help="model version")
    comp.add_argument("--image-size", type=int, help="square input size in pixels (sets height and width)")
    comp.add_argument("--height", type=int)
    comp.add_argument("--width", type=int)
    comp.add_argument("--color", choices=["grayscale", "rgb"])
    comp.add_argument("--crop", choices=CROPS)
    comp.add_argument("--resize", choices=RESIZE_METHODS)
    comp.add_argument("--scale", type=_number, help="pixel multiplier, e.g. 1/255")
    comp.add_argument("--offset", type=_number, help="added after scaling, e.g. -1")
    comp.add_argument("--layout", choices=["NHWC"], help="tensor layout (Keras models are channels-last)")
    comp.add_argument("--labels", type=_labels, help="comma-separated class names, e.g. NORMAL,PNEUMONIA")
    comp.add_argument("--positive-label", help="the class `probability` refers to (binary models)")
    comp.add_argument("--threshold", type=float, help="decision threshold on P(positive)")
    comp.add_argument("--description")
    comp.add_argument("--opset", type=int, default=17)

    check = sub.add_parser("check", help="verify a model loads and predicts, as the server would")
    check.add_argument("model", type=Path, help="MODEL_PATH: a .h5, a model folder or a folder of models")
    check.add_argument("--runtime", default="onnx")

    imp = sub.add_parser("import-mlflow", help="convert an MLflow scikit-learn model to ONNX + manifest (offline)")
    imp.add_argument("model_dir", type=Path, help="the MLflow model folder (holding MLmodel)")
    imp.add_argument("--out", type=Path, required=True, help="folder to write model.onnx and manifest.json to")
    imp.add_argument("--trust", action="store_true",
                     help="allow loading a pickle/cloudpickle model (it can run code); needed for pickles only")
    imp.add_argument("--name", help="model name (default: the folder name)")
    imp.add_argument("--version", default="1")

    pred = sub.add_parser("predict", help="classify image files locally, printing JSON lines")
    pred.add_argument("images", type=Path, nargs="+")
    pred.add_argument("--model-path", type=Path, help="default: MODEL_PATH or the bundled model")
    pred.add_argument("--runtime", default="onnx")
    keys = sub.add_parser("keys", help="API keys for the access-controlled models")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="print a new key (shown once) and its SLIMSERVE_API_KEYS entry")
    create.add_argument("--name", required=True, help="who or what holds the key, e.g. ward7-ehr")
    create.add_argument("--models", required=True, help="comma-separated model names, or * for all")

    audit = sub.add_parser("audit", help="list audit records (PostgreSQL at DATABASE_URL, or --file)")
    audit.add_argument("--patient-id", help="a patient id; matched by its HMAC (needs SLIMSERVE_AUDIT_KEY)")
    audit.add_argument("--since", help="ISO time, e.g. 2026-12-01 or 2026-12-01T08:00:00+00:00")
    audit.add_argument("--model")
    audit.add_argument("--file", type=Path, help="read JSON-lines records (the stdout sink's log) instead")
    audit.add_argument("--limit", type=int, default=1000)
    from slimserve.drift import simulate

    simulate.add_parser(sub)
    return parser


def _keys(args: argparse.Namespace) -> dict[str, Any]:
    from slimserve.auth.keys import create_key

    key, entry = create_key(args.name, args.models.split(","))
    return {"key": key, "entry": entry.line(), "key_id": entry.key_id, "name": entry.name,
            "models": sorted(entry.models)}


def _audit(args: argparse.Namespace) -> list[dict[str, Any]]:
    from slimserve.audit.query import run_query

    return run_query(args)


def _drift(args: argparse.Namespace) -> dict[str, Any]:
    from slimserve.drift.simulate import run

    return run(args)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {
        "name": args.name, "version": args.version, "color": args.color, "crop": args.crop,
        "resize": args.resize, "scale": args.scale, "offset": args.offset, "layout": args.layout,
        "labels": args.labels, "positive_label": args.positive_label, "threshold": args.threshold,
        "description": args.description, "height": args.height, "width": args.width,
    }
    if args.image_size:
        values["height"] = values["height"] or args.image_size
        values["width"] = values["width"] or args.image_size
    return {key: value for key, value in values.items() if value is not None}


def _compile(args: argparse.Namespace) -> dict[str, Any]:
    from slimserve.compiler import compile_model

    manifest = compile_model(args.model, _overrides(args), opset=args.opset)
    return {"compiled": str(manifest.compiled_path), "manifest": manifest.to_dict()}


def _import_mlflow(args: argparse.Namespace) -> dict[str, Any]:
    from slimserve.mlflow_import import import_mlflow

    manifest = import_mlflow(args.model_dir, args.out, trust=args.trust, name=args.name, version=args.version)
    return {"compiled": str(manifest.compiled_path), "manifest": manifest.to_dict()}


def _check(args: argparse.Namespace) -> dict[str, Any]:
    from slimserve.registry import build_registry

    registry = build_registry(str(args.model), args.runtime, auto_compile=False)
    registry.load_all(background=False)
    return {f"{e.manifest.name} {e.manifest.version}": {"ready": e.ready, "error": e.error,
                                                          "version": e.manifest.version}
            for e in registry.all_entries()}


def _predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    from slimserve.config import from_env
    from slimserve.imaging import ImageLimits
    from slimserve.registry import build_registry
    from slimserve.service import PredictionService, Request

    registry = build_registry(str(args.model_path or from_env()["MODEL_PATH"]), args.runtime, auto_compile=False)
    registry.load_all(background=False)
    service = PredictionService(registry, ImageLimits(), ready_wait_seconds=0)
    results = []
    for image in args.images:
        try:
            result = service.predict(None, Request(image.read_bytes(), "application/octet-stream"))
            results.append({"filename": image.name, "prediction": result.labels[0], "probability": result.scores[0],
                            "probabilities": result.probabilities[0], "threshold": result.threshold,
                            "model": result.model, "version": result.version, "inference_ms": result.inference_ms})
        except SlimserveError as exc:
            results.append({"filename": image.name, "error": {"code": exc.code, "message": exc.message}})
    return results


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; exit status 1 with a one-line message on a model error."""
    args = build_parser().parse_args(argv)
    try:
        commands = {"compile": _compile, "import-mlflow": _import_mlflow, "check": _check, "predict": _predict,
                    "keys": _keys, "audit": _audit, "drift": _drift}
        result = commands[args.command](args)
    except (SlimserveError, ValueError) as exc:
        print(f"slimserve {args.command}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.command == "check" and not all(model["ready"] for model in result.values()):
        return 1
    return 0
