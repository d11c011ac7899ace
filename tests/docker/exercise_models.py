"""One request per served model against a running container: /predict for image models, /invocations for tabular.

Used by `make docker-test` (scripts/docker_test.sh) after scripts/deploy/smoke.py passed. Stdlib only; the
model list and each tabular model's features come from the service's own `GET /models`, so a new model is
exercised without editing this file. Exit 0 when every model answered 200 with a prediction, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "deploy"))
import smoke


def valid_row(features: list[dict[str, Any]]) -> dict[str, Any]:
    """One record every feature accepts: the first category, else the minimum (or 0) of the allowed range."""
    row: dict[str, Any] = {}
    for feature in features:
        if feature.get("categories"):
            row[feature["name"]] = feature["categories"][0]
            continue
        low, high = feature.get("minimum"), feature.get("maximum")
        value = low if low is not None else min(0.0, high) if high is not None else 0.0
        row[feature["name"]] = int(value) if feature["type"] == "integer" else value
    return row


def post_json(url: str, body: Any, timeout: float) -> smoke.Reply:
    """POST a JSON body and parse the JSON reply."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    return smoke._exchange(request, timeout)


def exercise(base: str, sample: Path, timeout: float) -> list[str]:
    """Call every model once; return one line per model, raising SmokeFailure on the first bad answer."""
    listing = smoke.get(f"{base}/models", timeout)
    if listing.status != 200 or not isinstance(listing.body, dict):
        raise smoke.SmokeFailure(f"/models answered {listing.status}")
    lines = []
    for model in listing.body["models"]:
        name = model["name"]
        started = time.monotonic()
        if model["features"] is None:
            reply = smoke.post_file(f"{base}/models/{name}/predict", "file", sample, timeout)
            body = reply.body if isinstance(reply.body, dict) else {}
            ok = reply.status == 200 and body.get("prediction") in model["labels"]
            route = "predict"
        else:
            reply = post_json(f"{base}/models/{name}/invocations",
                              {"dataframe_records": [valid_row(model["features"])]}, timeout)
            body = reply.body if isinstance(reply.body, dict) else {}
            ok = reply.status == 200 and len(body.get("predictions", [])) == 1
            route = "invocations"
        if not ok:
            raise smoke.SmokeFailure(f"/models/{name}/{route} answered {reply.status}: {str(reply.body)[:300]}")
        lines.append(f"{name}: /{route} 200 in {1000 * (time.monotonic() - started):.0f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sample", type=Path, default=smoke.DEFAULT_SAMPLE)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        lines = exercise(args.url.rstrip("/"), args.sample, args.request_timeout)
    except smoke.SmokeFailure as failure:
        print(f"model check FAILED: {failure}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
