"""`slimserve drift simulate`: replay training-CSV rows, one feature shifted, through HTTP; print the drift.

Rows are drawn (with replacement, seeded) from the model's training CSV, the named feature moved by a
number of its training standard deviations (or by an absolute amount) and kept inside the feature's
accepted range, then sent in batches to `/models/<name>/predict`. Where 0 means "not measured", zeros
stay zeros. The answer of `/models/<name>/drift` is printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import statistics
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slimserve.paths import shared_data

TRAINING_CSV = {
    "heart_failure": ("heart_failure", "heart.csv"),
    "diabetes": ("diabetes", "diabetes_prediction_dataset.csv"),
    "aids": ("aids", "AIDS_Classification.csv"),
}
_SHIFT = re.compile(r"^(?P<name>[^=]+)=(?P<amount>[+-]?\d+(?:\.\d+)?)(?P<unit>sd)?$")
# (method, path, JSON body or None) -> (status, JSON answer)
Sender = Callable[[str, str, Any], tuple[int, Any]]


def parse_shift(text: str) -> tuple[str, float, bool]:
    """`Age=+1sd` → ("Age", 1.0, True); `Age=+5` → ("Age", 5.0, False)."""
    match = _SHIFT.match(text.strip())
    if match is None:
        raise ValueError("--shift must look like FEATURE=+1sd or FEATURE=-5")
    return match["name"], float(match["amount"]), match["unit"] == "sd"


def typed_rows(path: Path, features: list[dict]) -> list[dict[str, Any]]:
    """The feature columns of a CSV, typed as the model's features say."""
    with open(path, newline="") as handle:
        raw = list(csv.DictReader(handle))
    cast = {"integer": lambda v: int(float(v)), "boolean": lambda v: int(float(v)), "number": float,
            "category": str}
    return [{f["name"]: cast[f["type"]](row[f["name"]]) for f in features} for row in raw]


def shift_rows(rows: list[dict], feature: dict, amount: float, in_sd: bool) -> list[dict]:
    """Copies of `rows` with one numeric feature moved, clipped to its accepted range."""
    name = feature["name"]
    if feature["type"] not in ("integer", "number"):
        raise ValueError(f"{name} is not numeric; only numeric features can be shifted")
    zero_missing = feature.get("zero_means_missing", False)
    present = [r[name] for r in rows if not (zero_missing and r[name] == 0)]
    step = amount * statistics.pstdev(present) if in_sd else amount
    low, high = feature.get("minimum"), feature.get("maximum")
    shifted = []
    for row in rows:
        value = row[name]
        if not (zero_missing and value == 0):
            value = value + step
            value = min(high, value) if high is not None else value
            value = max(low, value) if low is not None else value
            value = round(value) if feature["type"] == "integer" else round(value, 4)
        shifted.append({**row, name: value})
    return shifted


def replay(send: Sender, model: str, rows: list[dict], batch: int = 25) -> dict[str, int]:
    """POST the rows in batches; counts of answers by status."""
    statuses: dict[str, int] = {}
    for start in range(0, len(rows), batch):
        status, _ = send("POST", f"/models/{model}/predict", {"records": rows[start:start + batch]})
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return statuses


def http_sender(base_url: str, api_key: str | None = None) -> Sender:
    """A Sender over HTTP (urllib), with an optional API key."""
    def send(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if api_key:
            request.add_header("X-API-Key", api_key)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    return send


def simulate(send: Sender, model: str, shift: str | None, rows: int, seed: int = 0,
             data: Path | None = None, batch: int = 25) -> dict[str, Any]:
    """Draw, shift and replay `rows` rows; the server's drift report afterwards, in brief."""
    status, info = send("GET", f"/models/{model}", None)
    if status != 200:
        raise ValueError(f"GET /models/{model} answered {status}")
    features = info["features"]
    if data is None:
        if model not in TRAINING_CSV:
            raise ValueError(f"no known training CSV for {model}; pass --data")
        data = shared_data(*TRAINING_CSV[model])
    pool = typed_rows(data, features)
    drawn = random.Random(seed).choices(pool, k=rows)
    if shift:
        name, amount, in_sd = parse_shift(shift)
        feature = next((f for f in features if f["name"] == name), None)
        if feature is None:
            raise ValueError(f"{model} has no feature {name}")
        drawn = shift_rows(drawn, feature, amount, in_sd)
    answers = replay(send, model, drawn, batch)
    _, report = send("GET", f"/models/{model}/drift", None)
    brief = {c["name"]: {"psi": c["psi"], "p_value": c["p_value"], "status": c["status"]}
             for c in [*report["features"], report["prediction"]]}
    return {"model": model, "shift": shift, "rows_sent": rows, "answers": answers, "status": report["status"],
            "window_rows": report["window_rows"], "columns": brief}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `drift simulate` sub-command."""
    drift = sub.add_parser("drift", help="drift monitoring tools")
    drift_sub = drift.add_subparsers(dest="drift_command", required=True)
    sim = drift_sub.add_parser("simulate", help="replay (shifted) training rows through HTTP, print the drift")
    sim.add_argument("--model", required=True)
    sim.add_argument("--shift", help="FEATURE=+1sd (training standard deviations) or FEATURE=+5 (units)")
    sim.add_argument("--rows", type=int, default=500)
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--data", type=Path, help="CSV to draw rows from (default: the model's training CSV)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--batch", type=int, default=25)
    sim.add_argument("--api-key", help="for a model behind access control")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run `drift simulate` from parsed arguments."""
    return simulate(http_sender(args.url, args.api_key), args.model, args.shift, args.rows, args.seed,
                    args.data, args.batch)
