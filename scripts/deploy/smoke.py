"""Smoke test a running slimserve: /health, /ready, /version (the expected commit) and one /predict.

Stdlib only, so it runs on a bare CI runner against a container (`python scripts/deploy/smoke.py
--url http://127.0.0.1:8000 --commit "$GITHUB_SHA"`) and from render_deploy.py against Render.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "sample_xray.jpeg"
PREDICTION_KEYS = ("filename", "prediction", "probability")
LABELS = {"NORMAL", "PNEUMONIA"}


class SmokeFailure(Exception):
    """The service did not behave as a healthy deploy of the expected commit."""


@dataclass(frozen=True)
class Reply:
    """Status and parsed JSON body (None when the body is not JSON) of one HTTP exchange."""

    status: int
    body: Any


def _exchange(request: urllib.request.Request, timeout: float) -> Reply:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        # A refused or reset connection is what a service that is still starting looks like.
        raise SmokeFailure(f"{request.full_url}: {getattr(error, 'reason', error)}") from None
    try:
        return Reply(status, json.loads(raw))
    except ValueError:
        return Reply(status, None)


def get(url: str, timeout: float) -> Reply:
    """GET a URL and parse its JSON body."""
    return _exchange(urllib.request.Request(url, headers={"Accept": "application/json"}), timeout)


def post_file(url: str, field: str, path: Path, timeout: float) -> Reply:
    """POST one file as multipart/form-data and parse the JSON reply."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": "application/json"}
    return _exchange(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout)


def check_serving(base: str, commit: str | None, timeout: float) -> dict[str, Any]:
    """One pass over /health, /ready and /version; raise SmokeFailure on the first problem."""
    health = get(f"{base}/health", timeout)
    if health.status != 200:
        raise SmokeFailure(f"/health answered {health.status}")
    ready = get(f"{base}/ready", timeout)
    if ready.status != 200:
        raise SmokeFailure(f"/ready answered {ready.status} (model not loaded yet?)")
    version = get(f"{base}/version", timeout)
    if version.status != 200 or not isinstance(version.body, dict):
        raise SmokeFailure(f"/version answered {version.status}")
    if commit and version.body.get("git_commit") != commit:
        raise SmokeFailure(f"/version reports git_commit {version.body.get('git_commit')!r}, expected {commit!r}")
    return version.body


def check_prediction(base: str, sample: Path, timeout: float) -> dict[str, Any]:
    """POST the sample image to /predict and check the answer has the documented shape."""
    reply = post_file(f"{base}/predict", "file", sample, timeout)
    if reply.status != 200 or not isinstance(reply.body, dict):
        raise SmokeFailure(f"/predict answered {reply.status}")
    missing = [key for key in PREDICTION_KEYS if key not in reply.body]
    if missing:
        raise SmokeFailure(f"/predict reply lacks {', '.join(missing)}")
    probability = reply.body["probability"]
    if reply.body["prediction"] not in LABELS or not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise SmokeFailure(f"/predict reply is malformed: {reply.body}")
    return reply.body


def wait_until(check: Any, deadline_s: float, interval_s: float, log: Any = print) -> Any:
    """Call check() until it stops raising SmokeFailure or the deadline passes (then re-raise the last)."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            return check()
        except SmokeFailure as failure:
            if time.monotonic() + interval_s > deadline:
                raise
            if str(failure) != last:  # a build takes minutes: log each new reason once, not every poll
                log(f"  not yet: {failure}")
                last = str(failure)
            time.sleep(interval_s)


def run(base: str, commit: str | None, sample: Path, wait_s: float, interval_s: float,
        request_timeout: float, log: Any = print) -> dict[str, Any]:
    """Wait (bounded) for the service to serve `commit`, then check one prediction."""
    base = base.rstrip("/")
    log(f"smoke test {base} (expect commit {commit or 'any'})")
    version = wait_until(lambda: check_serving(base, commit, request_timeout), wait_s, interval_s, log)
    # A cold instance may time out on its first prediction, so the prediction gets a few tries too.
    prediction = wait_until(lambda: check_prediction(base, sample, request_timeout), interval_s * 3, interval_s, log)
    log(f"smoke test passed: version {version.get('version')}, prediction {prediction['prediction']} "
        f"p={prediction['probability']}")
    return {"version": version, "prediction": prediction}


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when the smoke test passes, 1 when it fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the service")
    parser.add_argument("--commit", help="git commit /version must report")
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE, help="image to POST to /predict")
    parser.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the service")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between attempts")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    try:
        result = run(args.url, args.commit, args.sample, args.wait, args.interval, args.request_timeout)
    except SmokeFailure as failure:
        print(f"smoke test FAILED: {failure}", file=sys.stderr)
        return 1
    print(json.dumps(result["prediction"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
