"""Every bundled model in 0.1 vCPU / 256 MB: memory, cold start, per-model latency and CPU; optionally vs MLflow."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from scripts.bench import server as srv
from scripts.bench.client import HOST, Upload, load_samples
from scripts.bench.report import judge, options, pick, ratio, start_report, write
from scripts.bench.sandbox import CFS_PERIOD_US, ENVELOPE_MEMORY, TENTH_VCPU
from slimserve.errors import UnprocessableEntity
from slimserve.manifest import Feature, load_manifest
from slimserve.tabular import build_table_schema

# Which data file feeds which model; the four antibiotic models share one file, filtered by WHONET code.
SOURCES = {"heart_failure": "heart_failure/heart.csv", "diabetes": "diabetes/diabetes_prediction_dataset.csv",
           "aids": "aids/AIDS_Classification.csv", "antibiotic": "antibiotic/camda2025_training_mic_sir.csv"}
ROUTES, SIZES = ("invocations", "predict"), ("1_row", "1000_rows")
HEART = "/models/heart_failure/invocations"
MLFLOW_OFFLINE = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # mlflow 3 phones home otherwise
GOALS = {"memory_mb": 128.0, "1_row": 2.0, "1000_rows": 5.0, "faster_x": 3.0, "smaller_x": 4.0}
# mlflow / slimserve of the same figure, measured the same way in the same run.
VERSUS = {"peak_pss_mb": ("memory", "peak_pss_mb"), "peak_rss_mb": ("memory", "peak_rss_mb"),
          "cold_start_s": ("cold_start_s", "first_invocation_200"),
          **{f"p50_{size}_ms": ("latency", size, "client_ms", "p50") for size in SIZES}}
NOTES = ["gunicorn_ms: gunicorn's own request time (access log %(D)s), parsed headers to last byte written: body "
         "read, Flask, parsing, validation, ONNX Runtime, serialization. client_ms: a new loopback connection per "
         "request. inference_ms: session.run only. cpu_ms_per_request: the server cgroup's CPU over the series.",
         "The MLflow comparison runs without limits, one server at a time, page cache dropped before each: "
         "slimserve with every bundled model against mlflow serving heart_failure alone."]


class ModelPayloads(NamedTuple):
    """One model's bodies per route: 1-row bodies to cycle through and one 1,000-row body."""

    singles: dict[str, list[Upload]]
    bulk: dict[str, Upload]
    rows_available: int
    rows_skipped: int


def source_for(model: str, data: Path = srv.SHARED_DATA) -> tuple[Path, str | None]:
    """The CSV with real rows for `model`, and the WHONET code to filter it by (None: every row)."""
    if antibiotic := re.fullmatch(r"modelo_([A-Z]{3})_NM", model):
        return data / SOURCES["antibiotic"], antibiotic.group(1)
    return data / SOURCES[model], None


def tabular_manifests(models_dir: Path) -> dict[str, list[Feature]]:
    """Name -> features of every tabular model under `models_dir`, read as the server reads manifests."""
    manifests = (load_manifest(path.parent) for path in sorted(models_dir.glob("*/*/manifest.json")))
    return {manifest.name: manifest.features for manifest in manifests if manifest.features}


def json_value(feature: Feature, raw: str) -> int | float | str:
    """A CSV cell as the JSON value the feature asks for: category -> str, integer/boolean -> int, number."""
    if feature.type == "category":
        return raw
    number = float(raw)
    if feature.type in ("integer", "boolean") and not number.is_integer():
        raise ValueError(f"{feature.name}: {raw!r} is not an integer")
    return int(number) if number.is_integer() else number  # integral numbers stay integers, as in the data


def accepted(features: list[Feature], rows: list[list[Any]]) -> list[int]:
    """Indexes of the rows the server's own schema accepts (all columns checked at once, refused rows dropped)."""
    schema, keep = build_table_schema("bench", features), list(range(len(rows)))
    while keep:
        try:
            schema.load({f.name: [rows[i][j] for i in keep] for j, f in enumerate(features)})
            return keep
        except UnprocessableEntity as exc:  # names the first refused row of each column
            refused = {detail["row"] for detail in exc.extra["details"]}
            if None in refused:
                raise  # a whole column is wrong, not a row: nothing to drop
            keep = [i for at, i in enumerate(keep) if at not in refused]
    return keep


def build_payloads(name: str, features: list[Feature], bulk: int = 1000, singles: int = 20,
                   data: Path = srv.SHARED_DATA) -> ModelPayloads:
    """Bodies from the model's real data: up to `singles` different 1-row bodies and one `bulk`-row body."""
    path, code = source_for(name, data)
    with path.open(newline="", encoding="utf-8") as handle:
        records = [r for r in csv.DictReader(handle) if code is None or r.get("whonet_code") == code]
    parsed = []
    for record in records:
        with contextlib.suppress(KeyError, ValueError):  # a cell the manifest's type cannot hold: skipped
            parsed.append([json_value(f, record[f.name]) for f in features])
    if not (rows := [parsed[i] for i in accepted(features, parsed)]):
        raise ValueError(f"{name}: no usable rows in {path}")
    columns = [f.name for f in features]

    def body(route: str, rows: list[list[Any]]) -> Upload:  # MLflow's dataframe_split, slimserve's records
        data = {"dataframe_split": {"columns": columns, "data": rows}} if route == "invocations" else {
            "records": [dict(zip(columns, row, strict=True)) for row in rows]}
        return Upload(json.dumps(data).encode(), "application/json", f"{len(rows)} row(s)")

    return ModelPayloads({r: [body(r, [row]) for row in rows[:singles]] for r in ROUTES},
                         {r: body(r, [rows[i % len(rows)] for i in range(bulk)]) for r in ROUTES},
                         len(rows), len(records) - len(rows))


def sizes(server: srv.Server, path: str, singles: list[Upload], bulk: Upload, repeats: int, log: bool = True) -> dict:
    """A 1-row series (`repeats`, cycling `singles`) and a 1,000-row one (`repeats // 4`) on one route."""
    return {"1_row": server.timed(path, singles, repeats, access_log=log),
            "1000_rows": server.timed(path, [bulk], max(1, repeats // 4), access_log=log)}


def all_models(args: argparse.Namespace, payloads: dict[str, ModelPayloads], xray: Upload, workdir: Path) -> dict:
    """Every model in 0.1 vCPU + the memory limit: cold start and memory; then each model's series on a full core."""
    server = srv.slimserve("all", workdir, TENTH_VCPU, ENVELOPE_MEMORY, srv.BUNDLED, str(srv.MODELS))
    out: dict = {}
    with srv.serving(server, out):
        out["cold_start_s"] = srv.cold_starts(server, [
            ("first_ready_200", "GET", "/ready", None), ("first_xray_200", "POST", "/predict", xray),
            ("first_tabular_200", "POST", HEART, payloads["heart_failure"].singles["invocations"][0])], 120.0)
        if out["cold_start_s"]["outcome"] == "ok":
            server.sandbox.write("cpu", "cpu.cfs_quota_us", CFS_PERIOD_US)  # one full core; the memory limit stays
            out["full_core"] = {name: {route: sizes(server, f"/models/{name}/{route}", p.singles[route], p.bulk[route],
                                                    args.repeats) for route in ROUTES} for name, p in payloads.items()}
    return out


def save_mlflow_model(folder: Path) -> dict:
    """The MLflow reference: one-hot + scaler + logistic regression on heart.csv, saved by mlflow.sklearn."""
    os.environ.update(MLFLOW_OFFLINE)
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["Age", "RestingBP", "Cholesterol", "FastingBS", "MaxHR", "Oldpeak"]
    categorical = ["Sex", "ChestPainType", "RestingECG", "ExerciseAngina", "ST_Slope"]
    # object columns: mlflow 3.17's infer_signature does not understand pandas 3's string dtype.
    frame = pd.read_csv(srv.SHARED_DATA / SOURCES["heart_failure"]).astype(dict.fromkeys(categorical, object))
    x_train, x_test, y_train, y_test = train_test_split(frame[numeric + categorical], frame["HeartDisease"],
                                                        test_size=0.2, stratify=frame["HeartDisease"], random_state=42)
    prep = ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"),
                                                                   categorical)])
    pipeline = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=1000))]).fit(x_train, y_train)
    mlflow.sklearn.save_model(pipeline, str(folder), signature=infer_signature(x_train, pipeline.predict(x_train)))
    return {"mlflow": mlflow.__version__, "test_accuracy": round(float(pipeline.score(x_test, y_test)), 4)}


def contender(label: str, args: argparse.Namespace, heart: ModelPayloads, workdir: Path, model_dir: Path) -> dict:
    """One server without limits (cgroups for accounting only) answering heart_failure, measured alone."""
    server, path, out = srv.slimserve(label, workdir, None, None, srv.BUNDLED, str(srv.MODELS)), HEART, {}
    if label == "mlflow":  # `mlflow models serve` execs `uvicorn` by name: the venv goes first on PATH
        venv = Path(sys.executable).parent
        argv = [str(venv / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "--host",
                HOST, "--port", str(server.port), "--workers", "1"]
        env = {**MLFLOW_OFFLINE, "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"}
        server, path = srv.Server(argv, env, server.port, server.sandbox, server.log), "/invocations"
    with srv.serving(server, out, (model_dir,)):
        out["cold_start_s"] = srv.cold_starts(server, [("first_invocation_200", "POST", path,
                                                        heart.singles["invocations"][0])], 120.0)
        if out["cold_start_s"]["outcome"] == "ok":  # uvicorn's access log has no request time
            out["latency"] = sizes(server, path, heart.singles["invocations"], heart.bulk["invocations"], args.repeats,
                                   log=label != "mlflow")
    return out


def goals(report: dict) -> dict[str, Any]:
    """Every goal of the issue with its value and pass/fail."""
    env, versus = report["all_models"], pick(report, "mlflow", "ratios") or {}
    memory = {f"whole_server_{k}": pick(env, "memory", k) for k in ("peak_pss_mb", "peak_rss_mb", "cgroup_peak_mb")}
    out = judge(memory, dict.fromkeys(memory, GOALS["memory_mb"]))
    for route, size in ((route, size) for route in ROUTES for size in SIZES):
        per_model = {m: pick(r, route, size, "gunicorn_ms", "p50") for m, r in env.get("full_core", {}).items()}
        worst = max(((v, m) for m, v in per_model.items() if v is not None), default=(None, None))
        name = f"{route}_{size}_server_side_ms"
        out[name] = judge({name: worst[0]}, {name: GOALS[size]})[name] | {"worst_model": worst[1],
                                                                          "per_model": per_model}
    limits = {f"faster_than_mlflow_{k}": GOALS["faster_x"] for k in ("p50_1_row_ms", "p50_1000_rows_ms",
                                                                     "cold_start_s")}
    limits |= {f"smaller_than_mlflow_{k}": GOALS["smaller_x"] for k in ("peak_pss_mb", "peak_rss_mb")}
    return out | judge({n: versus.get(n.split("mlflow_")[1]) for n in limits}, limits, at_least=limits)


def main(argv: list[str] | None = None) -> int:
    """Run the phases, write the JSON and print the goals."""
    args = options(__doc__, {
        "--with-mlflow": (False, "also `mlflow models serve`, one server at a time"),
        "--repeats": (200, "1-row requests per series (1,000 rows: a quarter)"),
        "--out": (srv.REPO / "artifacts" / "bench" / "tabular.json", "the JSON report"),
        "--save-mlflow-model": {"type": Path, "help": argparse.SUPPRESS}}, argv)  # the child that imports mlflow
    if args.save_mlflow_model:  # in a child, so the benchmark itself never maps sklearn/mlflow pages
        print(json.dumps(save_mlflow_model(args.save_mlflow_model)))
        return 0
    payloads = {name: build_payloads(name, features) for name, features in tabular_manifests(srv.MODELS).items()}
    report = start_report(notes=NOTES, repeats=args.repeats, rows={
        n: {"usable": p.rows_available, "skipped": p.rows_skipped} for n, p in payloads.items()})
    with tempfile.TemporaryDirectory(prefix="slimserve-tabular-") as tmp:
        print("tabular: every model in the envelope …", file=sys.stderr, flush=True)
        report["all_models"] = all_models(args, payloads, load_samples(srv.SAMPLES)[0], Path(tmp))
        if args.with_mlflow:
            model_dir = Path(tmp) / "mlflow_heart_lr"
            report["mlflow"] = {"model": json.loads(subprocess.run([sys.executable, "-m", "scripts.bench.tabular",
                                "--save-mlflow-model", str(model_dir)], cwd=srv.REPO, capture_output=True, check=True,
                                                                   timeout=300).stdout.splitlines()[-1])}
            for label in ("slimserve", "mlflow"):
                print(f"tabular: {label} (no limits) …", file=sys.stderr, flush=True)
                report["mlflow"][label] = contender(label, args, payloads["heart_failure"], Path(tmp), model_dir)
            report["mlflow"]["ratios"] = {name: ratio(pick(report["mlflow"]["mlflow"], *keys), pick(
                report["mlflow"]["slimserve"], *keys)) for name, keys in VERSUS.items()}
    report["goals"] = goals(report)
    write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
