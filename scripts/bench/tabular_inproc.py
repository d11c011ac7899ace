"""In-process timings of the Flask app (no socket, no gunicorn) and where a tabular request's time goes.

Run as a child of the benchmark (`python -m scripts.bench.tabular_inproc <repeats>`, prints JSON), so the
benchmark process itself never maps onnxruntime/Flask pages while it measures the servers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

from scripts.bench.tabular_data import build_payloads, tabular_manifests  # noqa: E402
from scripts.bench.tabular_http import summarize  # noqa: E402

MODELS = REPO / "artifacts" / "models"
BUNDLED = MODELS / "pneumonia" / "1.0.0" / "model.h5"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall ms of `repeats` calls of `fn`, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def route_timings(client: Any, name: str, payloads: Any, repeats: int) -> dict:
    """Flask test-client time (WSGI app only) for 1 and 1,000 rows on /invocations and /predict."""
    out: dict[str, Any] = {}
    routes = {"invocations": (payloads.single_split, payloads.bulk_split),
              "predict": (payloads.single_records, payloads.bulk_records)}
    for route, (singles, bulk) in routes.items():
        path = f"/models/{name}/{route}"
        for label, uploads, count in (("1_row", singles, repeats), ("1000_rows", [bulk], max(1, repeats // 4))):
            times = []
            for i in range(count):
                upload = uploads[i % len(uploads)]
                started = time.perf_counter()
                reply = client.post(path, data=upload.body, content_type=upload.content_type)
                times.append((time.perf_counter() - started) * 1000)
                if reply.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {reply.status_code} {reply.data[:200]!r}")
            out[f"{route}_{label}"] = summarize(times)
    return out


def stage_breakdown(app: Any, name: str, split: bytes, records: bytes, repeats: int) -> dict:
    """p50 ms of each step of /invocations and /predict for one body, calling slimserve's own functions."""
    from slimserve.payloads import Table, parse_table
    from slimserve.service import decide_rows
    from slimserve.tabular import MISSING
    from slimserve.views import invocations as inv

    entry = app.extensions["slimserve.registry"].get(name)
    features, schema, runtime = entry.manifest.features, entry.table_schema, entry.runtime
    table = parse_table("application/json", split, features, 100_000)
    columns = schema.load(table.columns)
    probabilities = runtime.predict(columns)
    labels = decide_rows(entry.manifest, probabilities)
    parsed = json.loads(records)
    loaded = inv._records_schema.load(parsed)["records"]

    def records_table() -> Table:
        names = {key: None for record in loaded for key in record}
        return Table({key: [r.get(key, MISSING) for r in loaded] for key in names}, len(loaded))

    def records_response() -> str:
        with app.test_request_context():
            from flask import g
            g.request_id = "bench"
            body = inv._records_response.dump({
                "model": name, "version": "1", "inference_ms": 0.1, "request_id": "bench",
                "predictions": [{"label": label, "label_name": label, "probabilities": p} for label, p in
                                zip(labels, inv.probability_rows(_result(entry, labels, probabilities)),
                                    strict=True)]})
            return json.dumps(body)

    steps: dict[str, Callable[[], Any]] = {
        "json_loads": lambda: json.loads(split),
        "parse_table_incl_json_loads": lambda: parse_table("application/json", split, features, 100_000),
        "marshmallow_column_schema": lambda: schema.load(table.columns),
        "onnxruntime_run": lambda: runtime.predict(columns),
        "decide_rows": lambda: decide_rows(entry.manifest, probabilities),
        "invocations_response": lambda: json.dumps(inv._invocations_response.dump(
            {"predictions": [inv.mlflow_value(label) for label in labels]})),
        "predict_json_loads": lambda: json.loads(records),
        "predict_records_request_schema": lambda: inv._records_schema.load(parsed),
        "predict_records_to_columns": records_table,
        "predict_response_marshmallow_and_json": records_response,
    }
    return {step: summarize(timed(fn, repeats)[0])["p50"] for step, fn in steps.items()}


def _result(entry: Any, labels: list[str], probabilities: Any) -> Any:
    """A TablePrediction for the response step."""
    from slimserve.service import TablePrediction

    return TablePrediction(labels, probabilities, entry.manifest, 0.0)


def main(repeats: int) -> dict:
    """Timings for every tabular model and the stage breakdown of 1 and 1,000 rows."""
    from slimserve import create_app

    unreached = {f"RATE_LIMIT_{group}": "1000000/minute" for group in ("PREDICT", "INVOCATIONS", "DEFAULT")}
    app = create_app({"MODEL_PATH": str(BUNDLED), "MODEL_REPOSITORY": str(MODELS), "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False, **unreached})  # the limiter's cost is measured, its 429s never
    client = app.test_client()
    out: dict[str, Any] = {"routes": {}, "stages_1000_rows": {}, "stages_1_row": {}}
    for name, features in tabular_manifests(MODELS).items():
        payloads = build_payloads(name, features)
        out["routes"][name] = route_timings(client, name, payloads, repeats)
        out["stages_1000_rows"][name] = stage_breakdown(app, name, payloads.bulk_split.body,
                                                        payloads.bulk_records.body, max(5, repeats // 4))
        out["stages_1_row"][name] = stage_breakdown(app, name, payloads.single_split[0].body,
                                                    payloads.single_records[0].body, repeats)
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
