"""What /metrics and drift monitoring cost, and how well drift is detected.

`python -m scripts.bench.monitoring` writes `artifacts/bench/monitoring.json`:
- metrics: CPU per request with the metrics hooks on vs off (Flask test client, in process, alternating
  blocks), the hooks' own work timed alone, and the RSS a process adds for them after varied traffic;
- drift: CPU per row of a window update (1-row and 100-row batches);
- detection (real ONNX models, in process): rows until a +1 SD / -1 SD shift of each numeric feature is
  flagged `drift`, and the false-alarm rate over 5,000 held-back (test split) rows judged after every batch.
Run it under `nice -n 19` on a shared machine; nothing leaves this process.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "artifacts" / "bench" / "monitoring.json"
BATCH = 25
CONFIG = {"MODEL_REPOSITORY": None, "LOAD_ASYNC": False, "RATELIMIT_ENABLED": False, "AUDIT_SINK": "off",
          "AUTO_COMPILE": False}


def heart_app(metrics: bool = True, window: int = 500):
    """The app on the bundled heart-failure model."""
    from slimserve import create_app
    from slimserve.paths import BUNDLED_MODELS

    return create_app({**CONFIG, "MODEL_PATH": str(BUNDLED_MODELS / "heart_failure" / "1.0.0"),
                       "METRICS": metrics, "DRIFT_WINDOW": window})


def request_cpu_us(requests: int = 4000, blocks: int = 10) -> dict[str, Any]:
    """CPU µs per GET /models/heart_failure/ready with the metrics hooks on and off, alternating blocks."""
    clients = {True: heart_app(True).test_client(), False: heart_app(False).test_client()}
    per = {True: [], False: []}
    for _ in range(blocks):
        for on, client in clients.items():
            started = time.process_time()
            for _ in range(requests // blocks):
                client.get("/models/heart_failure/ready")
            per[on].append((time.process_time() - started) / (requests // blocks) * 1e6)
    on, off = statistics.median(per[True]), statistics.median(per[False])
    return {"route": "GET /models/heart_failure/ready", "requests": requests, "on_us": round(on, 1),
            "off_us": round(off, 1), "added_us": round(on - off, 1)}


def hook_cpu_us(rounds: int = 20000) -> float:
    """CPU µs of the metric updates one request makes (counter, histogram, in-flight, label lookups)."""
    app = heart_app(True)
    metrics = app.extensions["slimserve.metrics"]
    started = time.process_time()
    for _ in range(rounds):
        metrics.in_flight.inc()
        model, version = metrics.model_of({"name": "heart_failure"}, "predict.predict_named")
        metrics.requests.labels("/models/<name>/predict", "POST", model, version, "200").inc()
        metrics.latency.labels("/models/<name>/predict", model).observe(0.004)
        metrics.in_flight.dec()
    return round((time.process_time() - started) / rounds * 1e6, 2)


MEMORY_CODE = """
import gc, os, sys
from scripts.bench.monitoring import heart_app
app = heart_app({on})
client = app.test_client()
for i in range(2000):
    client.get(["/health", "/version", "/models", "/models/heart_failure", "/nope", "/models/x"][i % 6])
    client.post("/models/heart_failure/predict", json={{"records": [{{"Age": 50}}]}})
client.get("/metrics") if {on} else None
gc.collect()
print(int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
"""


def memory_mb(runs: int = 3) -> dict[str, Any]:
    """Resident memory of a process after the same traffic, metrics on vs off (median of runs)."""
    rss = {}
    for on in (True, False):
        code = MEMORY_CODE.format(on=on)
        values = [int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     cwd=REPO).stdout.split()[-1]) for _ in range(runs)]
        rss[on] = statistics.median(values) / 2**20
    return {"rss_on_mb": round(rss[True], 1), "rss_off_mb": round(rss[False], 1),
            "added_mb": round(rss[True] - rss[False], 2), "runs": runs}


def drift_update_us() -> dict[str, float]:
    """CPU µs per row of a window update, for 1-row and 100-row batches of real training rows."""
    import numpy as np

    from slimserve.drift.monitor import DriftMonitor
    from slimserve.drift.profile import profile_from_dict

    app = heart_app()
    entry = app.extensions["slimserve.registry"].get("heart_failure")
    monitor = DriftMonitor(profile_from_dict(entry.manifest.drift_reference), 500)
    rows = held_back("heart_failure")[0]
    result = {}
    for size in (1, 100):
        columns = entry.table_schema.load({f.name: [r[f.name] for r in rows[:size]]
                                           for f in entry.manifest.features})
        probabilities = np.tile([0.3, 0.7], (size, 1)).astype(np.float32)
        rounds = 20000 // size
        started = time.process_time()
        for _ in range(rounds):
            monitor.update(columns, probabilities)
        result[f"batch_{size}_us_per_row"] = round((time.process_time() - started) / (rounds * size) * 1e6, 2)
    return result


def held_back(model: str) -> tuple[list[dict], list[dict]]:
    """(training rows, held-back test rows) of the model's own split, typed as the server takes them."""
    from scripts.training.drift_reference import training_split
    from slimserve.manifest import load_manifest
    from slimserve.paths import BUNDLED_MODELS

    manifest = load_manifest(BUNDLED_MODELS / model / "1.0.0")
    X_train, X_test, _, _ = training_split(manifest)
    kinds = {f.name: f.type for f in manifest.features}

    def typed(frame) -> list[dict]:
        return [{k: (str(v) if kinds[k] == "category" else float(v)) for k, v in row.items()}
                for row in frame.to_dict("records")]

    return typed(X_train), typed(X_test)


def detection(model: str, max_rows: int = 1000, null_rows: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Rows until each numeric feature's ±1 SD shift is flagged, and false alarms on held-back rows."""
    from slimserve import create_app
    from slimserve.drift.simulate import shift_rows
    from slimserve.paths import BUNDLED_MODELS

    app = create_app({**CONFIG, "MODEL_PATH": str(BUNDLED_MODELS / model / "1.0.0")})
    client = app.test_client()
    monitor = app.extensions["slimserve.drift"]["monitors"][model]
    features = client.get(f"/models/{model}").get_json()["features"]
    train, test = held_back(model)
    rng = random.Random(seed)

    def run(rows: list[dict], stop_on_drift: bool) -> tuple[int | None, list[str]]:
        monitor.reset()
        statuses = []
        for start in range(0, len(rows), BATCH):
            answer = client.post(f"/models/{model}/predict", json={"records": rows[start:start + BATCH]})
            assert answer.status_code == 200, answer.get_json()
            report = client.get(f"/models/{model}/drift").get_json()
            if report["judged"]:
                statuses.append(report["status"])
            if stop_on_drift and report["status"] == "drift":
                return start + BATCH, statuses
        return None, statuses

    shifts = {}
    for feature in (f for f in features if f["type"] in ("integer", "number")):
        for amount in (1.0, -1.0):
            base = rng.choices(test, k=max_rows)
            flagged, _ = run(shift_rows(base, feature, amount, True), stop_on_drift=True)
            shifts[f"{feature['name']}{amount:+g}sd"] = flagged
    replay = test if len(test) >= null_rows else rng.choices(test, k=null_rows)
    _, statuses = run(replay[:null_rows], stop_on_drift=False)
    # With few held-back rows, 5,000 means each row ~27 times: the test then sees duplicates, not new draws.
    # The held-back rows once each, in order, is the clean (if short) null.
    _, once = run(test[:null_rows], stop_on_drift=False)
    return {
        "model": model, "train_rows": len(train), "held_back_rows": len(test),
        "rows_until_drift": shifts,
        "null": {"rows": null_rows, "resampled": len(test) < null_rows, "judgements": len(statuses),
                 "warn": statuses.count("warn"), "drift": statuses.count("drift"),
                 "false_alarm_rate": round((len(statuses) - statuses.count("ok")) / max(len(statuses), 1), 4)},
        "null_each_row_once": {"rows": min(len(test), null_rows), "judgements": len(once),
                               "warn": once.count("warn"), "drift": once.count("drift")},
    }


def main() -> None:
    """Measure everything and write the JSON."""
    result = {
        "python": sys.version.split()[0], "cpus": os.cpu_count(), "batch_rows": BATCH,
        "metrics": {"per_request": request_cpu_us(), "hooks_us": hook_cpu_us(), "memory": memory_mb()},
        "drift_update": drift_update_us(),
        "detection": [detection("heart_failure"), detection("diabetes")],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
