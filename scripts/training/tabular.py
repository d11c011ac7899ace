"""Shared training for tabular models: feature spec → stratified split → 5-fold CV → fit → ONNX → artifacts.

Features are the server's own `slimserve.manifest.Feature`, and the CSV is validated with the server's own
table schema, so training refuses exactly the values a client would get a 422 for. Every model is a
scikit-learn Pipeline whose ColumnTransformer reads one named column per feature, and skl2onnx turns each
column into its own ONNX input of the same name, so the served graph takes exactly the manifest's features.
ONNX work lives in tabular_onnx, metrics and plots in tabular_report. Nothing is pickled: the server reads
only model.onnx and JSON, and the manifest is written through `save_manifest`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scripts.training import model_card
from scripts.training import tabular_onnx as onnx_tools
from scripts.training import tabular_report as report
from slimserve.errors import UnprocessableEntity
from slimserve.manifest import Artifact, Feature, Manifest, compiled_record, save_manifest
from slimserve.paths import REPO_ROOT, shared_root
from slimserve.tabular import build_table_schema

REPO = REPO_ROOT

SHARED = shared_root()
FOLDS = 5


@dataclass(frozen=True)
class SimpleBaseline:
    """A deliberately simple model on a few features, to show what the full model adds."""

    name: str
    description: str
    features: tuple[str, ...]
    classifier: Callable[[int], ClassifierMixin]
    scale: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """Everything one training run needs: data, target, features, estimator and how to judge it."""

    name: str
    description: str
    target: str
    features: tuple[Feature, ...]
    classifier: Callable[[int], ClassifierMixin]  # seed → unfitted classifier
    scale: bool  # standardise numeric inputs: linear models need it, trees do not
    label_names: dict[str, str]
    positive_label: str | None = None  # binary models only
    threshold_rule: str = "fixed"
    simple_baseline: SimpleBaseline | None = None
    reference: dict[str, Any] | None = None
    rows: dict[str, str] = field(default_factory=dict)  # keep only rows where column == value
    test_size: float = 0.2
    # How the pipeline treats a feature (training only; clients see plain features):
    nominal: frozenset[str] = frozenset()  # integer codes of unordered groups (e.g. treatment arm): one-hot
    ignored: frozenset[str] = frozenset()  # in the input contract and validated, dropped before the classifier


def load_table(path: Path, spec: ModelSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """The spec's feature columns (validated by the server's own schema) and labels."""
    # Everything is read as text first so "" stays a category value and labels stay exactly as written.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column, value in spec.rows.items():
        frame = frame[frame[column] == value]
    if frame.empty:
        raise ValueError(f"{path.name}: no rows for {spec.rows}")
    # Float64 as before, so the fitted models do not change; the server's schema only judges the values.
    columns = {f.name: frame[f.name] if f.type == "category" else pd.to_numeric(frame[f.name]).astype(np.float64)
               for f in spec.features}
    try:
        build_table_schema(spec.name, list(spec.features)).load({k: v.tolist() for k, v in columns.items()})
    except UnprocessableEntity as exc:
        raise ValueError(f"{path.name}: {exc.message}") from None
    return pd.DataFrame(columns).reset_index(drop=True), frame[spec.target].to_numpy(dtype=str)


def build_pipeline(features: tuple[Feature, ...], classifier: ClassifierMixin, scale: bool,
                   nominal: frozenset[str] = frozenset(), ignored: frozenset[str] = frozenset()) -> Pipeline:
    """Preprocessing (one-hot, zero-as-missing imputation, optional scaling) followed by the classifier."""
    groups: dict[str, list[Feature]] = {"ignored": [], "category": [], "nominal": [], "zero_missing": [],
                                        "numeric": []}
    for f in features:
        key = "ignored" if f.name in ignored else "category" if f.type == "category" else \
            "nominal" if f.name in nominal else "zero_missing" if f.zero_means_missing else "numeric"
        groups[key].append(f)
    scaler = [StandardScaler()] if scale else []
    # handle_unknown="ignore": the server refuses undeclared values anyway; this keeps the graph total.
    makers: dict[str, Callable[[list[Feature]], Any]] = {
        "ignored": lambda fs: "drop",  # skl2onnx still declares the ONNX input, so the contract holds
        "category": lambda fs: OneHotEncoder(categories=[list(f.categories) for f in fs],
                                             handle_unknown="ignore", sparse_output=False),
        "nominal": lambda fs: OneHotEncoder(
            categories=[[float(v) for v in range(int(f.minimum), int(f.maximum) + 1)] for f in fs],
            handle_unknown="ignore", sparse_output=False),
        # skl2onnx converts SimpleImputer only with a float missing_values (0.0, not 0); FunctionTransformer
        # would not convert at all.
        "zero_missing": lambda fs: make_pipeline(SimpleImputer(missing_values=0.0, strategy="median"), *scaler),
        "numeric": lambda fs: StandardScaler() if scale else "passthrough",
    }
    transformers = [(key, makers[key](fs), [f.name for f in fs]) for key, fs in groups.items() if fs]
    return Pipeline([("features", ColumnTransformer(transformers)), ("classifier", classifier)])


def describe_pipeline(pipeline: Pipeline) -> str:
    """A short human-readable form of the pipeline for the manifest."""
    steps = [f"{name}{list(columns)}" for name, _, columns in pipeline[0].transformers]
    return f"ColumnTransformer({'; '.join(steps)}) → {pipeline[-1]!r}".replace("\n", " ")


def out_of_fold(pipeline: ClassifierMixin, X: pd.DataFrame, y: np.ndarray, seed: int, jobs: int):
    """Out-of-fold probabilities of stratified 5-fold CV, and each fold's row indices."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    result = cross_validate(pipeline, X, y, cv=folds, n_jobs=jobs, return_estimator=True, return_indices=True)
    oof = np.zeros((len(y), len(np.unique(y))))
    for estimator, rows in zip(result["estimator"], result["indices"]["test"], strict=True):
        oof[rows] = estimator.predict_proba(X.iloc[rows])
    return oof, list(result["indices"]["test"])


def evaluate(pipeline: ClassifierMixin, data: dict[str, Any], spec: ModelSpec, rule: str, args: argparse.Namespace):
    """CV on the training part, then fit on all of it and score the test part; returns (fitted, results)."""
    labels, positive = data["labels"], spec.positive_label
    started = time.perf_counter()
    oof, folds = out_of_fold(pipeline, data["X_train"], data["y_train"], args.seed, args.jobs)
    threshold = report.choose_threshold(data["y_train"], oof, labels, positive, rule)
    cv = report.cv_summary(data["y_train"], oof, folds, labels, positive, threshold)
    cv["seconds"] = round(time.perf_counter() - started, 1)
    pipeline.fit(data["X_train"], data["y_train"])
    proba = pipeline.predict_proba(data["X_test"])
    test = report.metrics(data["y_test"], proba, labels, positive, threshold)
    test["ci95"] = report.bootstrap_ci(data["y_test"], proba, labels, positive, threshold, args.seed)
    if threshold not in (None, 0.5):  # so accuracy can also be read against the dummy's 0.5 decisions
        at_half = report.metrics(data["y_test"], proba, labels, positive, 0.5)
        test["at_0.5"] = {k: at_half[k] for k in ("accuracy", "f1", "recall")}
    return pipeline, {"threshold": threshold, "cv": cv, "test": test, "proba": proba}


def train(spec: ModelSpec, args: argparse.Namespace) -> Path:
    """Train, evaluate, convert and write one model's folder; returns it."""
    X, y = load_table(args.data, spec)
    labels = sorted(set(y))  # sklearn orders classes_ (so the ONNX probabilities columns) this way
    if spec.positive_label is not None and (len(labels) != 2 or spec.positive_label not in labels):
        raise ValueError(f"{spec.name}: positive_label {spec.positive_label!r} needs two labels, got {labels}")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=spec.test_size, stratify=y,
                                                        random_state=args.seed)
    data = {"labels": labels, "X_train": X_train, "X_test": X_test, "y_train": y_train, "y_test": y_test}
    rule = spec.threshold_rule if spec.positive_label is not None else "argmax"
    model, result = evaluate(build_pipeline(spec.features, spec.classifier(args.seed), spec.scale, spec.nominal,
                                            spec.ignored), data, spec, rule, args)
    baselines = evaluate_baselines(spec, data, rule, args)

    folder = args.out / spec.name / args.version
    folder.mkdir(parents=True, exist_ok=True)
    onnx = onnx_tools.compile_to(folder / "model.onnx", spec.name, model, spec.features, X_test, result["proba"])
    report.plot_all(folder, y_test, result["proba"], labels, spec.positive_label, result["threshold"],
                    f"{spec.name} {args.version}")
    metrics = {
        "name": spec.name, "version": args.version, "labels": labels, "positive_label": spec.positive_label,
        "threshold": result["threshold"], "threshold_rule": report.THRESHOLD_RULES[rule],
        "split": {"test_size": spec.test_size, "stratified": True, "seed": args.seed, "n_train": len(y_train),
                  "n_test": len(y_test), "train_counts": report.counts(y_train, labels),
                  "test_counts": report.counts(y_test, labels)},
        "cv": result["cv"], "test": result["test"],
        "baseline": {name: {k: v for k, v in b.items() if k != "proba"} for name, b in baselines.items()},
        "reference": spec.reference, "onnx": onnx,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    save_manifest(build_manifest(spec, args, model, metrics, folder / "model.onnx"))
    model_card.write_card(folder)
    return folder


def evaluate_baselines(spec: ModelSpec, data: dict[str, Any], rule: str, args: argparse.Namespace) -> dict:
    """Two dummy classifiers and, if the spec names one, a simple model on a few features."""
    baselines = {}
    for strategy in ("most_frequent", "stratified"):
        # Inputs are ignored by a DummyClassifier, so it needs no preprocessing.
        dummy = DummyClassifier(strategy=strategy, random_state=args.seed)
        baselines[f"dummy_{strategy}"] = {"description": f"DummyClassifier(strategy={strategy!r})",
                                          **evaluate(dummy, data, spec, "fixed", args)[1]}
    if spec.simple_baseline is not None:
        simple = spec.simple_baseline
        subset = tuple(f for f in spec.features if f.name in simple.features)
        pipeline = build_pipeline(subset, simple.classifier(args.seed), simple.scale, spec.nominal, spec.ignored)
        baselines[simple.name] = {"description": simple.description, **evaluate(pipeline, data, spec, rule, args)[1]}
    return baselines


def build_manifest(spec: ModelSpec, args: argparse.Namespace, model: Pipeline, metrics: dict[str, Any],
                   onnx_path: Path) -> Manifest:
    """The manifest: the input contract, the artifact and its checks, how it was trained and how it scored."""
    onnx = metrics["onnx"]
    compiled = compiled_record(onnx_path, tool=onnx["tool"], opset=onnx["opset"], max_abs_diff=onnx["max_abs_diff"])
    return Manifest(
        name=spec.name, version=args.version, task="tabular_classification", description=spec.description,
        labels=metrics["labels"], label_names={label: spec.label_names[label] for label in metrics["labels"]},
        positive_label=spec.positive_label,
        # A multi-class model decides by argmax: the schema leaves its threshold out of the file.
        threshold=metrics["threshold"] if spec.positive_label is not None else 0.5,
        activation="softmax", features=list(spec.features),
        onnx={"label_output": onnx["outputs"][0], "probabilities_output": onnx["outputs"][1]},
        source=Artifact(onnx_path.name, compiled.sha256), compiled=compiled,
        training={"script": args.script, "command": args.command, "data": args.data.name,
                  "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
                  **({"rows": spec.rows} if spec.rows else {}), "seed": args.seed,
                  "estimator": describe_pipeline(model), "n_train": metrics["split"]["n_train"],
                  "n_test": metrics["split"]["n_test"], "threshold_rule": metrics["threshold_rule"]},
        metrics={"cv": metrics["cv"]["mean"], "test": {k: v for k, v in metrics["test"].items() if k != "ci95"},
                 "baseline": {name: b["test"] for name, b in metrics["baseline"].items()},
                 "reference": spec.reference},
        folder=onnx_path.parent,
    )


def parse_args(default_data: Path, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line every train_<set>.py shares."""
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--data", type=Path, default=default_data, help=f"CSV (default {default_data})")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "models", help="models folder")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split, the CV folds and the models")
    parser.add_argument("--version", default="1.0.0", help="version folder written under <out>/<name>/")
    parser.add_argument("--jobs", type=int, default=2, help="CV folds fitted in parallel")
    args = parser.parse_args(argv)
    script = Path(sys.argv[0]).resolve()
    args.script = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else script.name
    module = args.script.removesuffix(".py").replace("/", ".")
    args.command = shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])
    return args
