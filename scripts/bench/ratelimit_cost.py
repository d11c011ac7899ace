"""What rate limiting costs: Flask-Limiter's import time, and CPU per request with the limiter on vs off.

`python -m scripts.bench.ratelimit_cost [requests]` writes `artifacts/bench/ratelimit.json`. Requests go
through the Flask test client in this process (no socket), to the bundled X-ray model, on loopback only.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

OUT = REPO / "artifacts" / "bench" / "ratelimit.json"
BLOCKS = 20
# What the server has imported anyway before the limiter: only the rest is the limiter's cost.
SERVER_IMPORTS = "import flask, werkzeug.middleware.proxy_fix, slimserve.app, slimserve.views"


def import_ms(code: str, module: str) -> float:
    """Cumulative import time (ms) of `module` reported by `python -X importtime -c code`."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src")})
    pattern = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(module)}$")
    return next(int(m.group(1)) for line in done.stderr.splitlines() if (m := pattern.match(line))) / 1000


def import_cpu_ms() -> float:
    """CPU ms (not wall: other load on the machine counts less) of importing flask_limiter last."""
    code = (f"{SERVER_IMPORTS}; import time; t = time.process_time(); "
            "import flask_limiter, slimserve.ratelimit_memory; print((time.process_time() - t) * 1000)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "src")})
    return float(done.stdout)


def import_costs(repeats: int = 7) -> dict[str, float]:
    """Median import ms of flask_limiter alone (Flask included) and on top of what the server imports."""
    alone = [import_ms("import flask_limiter", "flask_limiter") for _ in range(repeats)]
    marginal = [import_ms(f"{SERVER_IMPORTS}; import flask_limiter", "flask_limiter") for _ in range(repeats)]
    return {"importtime_flask_limiter_alone_ms": statistics.median(alone),
            "importtime_flask_limiter_after_server_imports_ms": statistics.median(marginal),
            "cpu_ms_flask_limiter_after_server_imports": round(statistics.median(
                import_cpu_ms() for _ in range(repeats)), 1)}


def make_app(enabled: bool) -> Any:
    """The bundled model alone, loaded synchronously, limits too high to ever answer 429."""
    from slimserve import create_app

    return create_app({"MODEL_REPOSITORY": None, "LOAD_ASYNC": False, "RATELIMIT_ENABLED": enabled,
                       "RATELIMIT_STORAGE_URI": "memory://", "RATE_LIMIT_PREDICT": "10000000/minute",
                       "RATE_LIMIT_DEFAULT": "10000000/minute"})


def jpeg() -> bytes:
    """A small grey JPEG, larger than the model input."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buffer, format="JPEG")
    return buffer.getvalue()


def cpu_us_per_request(client: Any, path: str, count: int, image: bytes) -> float:
    """Process CPU µs per request over `count` requests; every one must answer 200."""
    started = time.process_time()
    for _ in range(count):
        if path == "/predict":
            reply = client.post(path, data={"file": (io.BytesIO(image), "a.jpg")})
        else:
            reply = client.get(path)
        if reply.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {reply.status_code}")
    return (time.process_time() - started) / count * 1e6


def request_costs(count: int) -> dict[str, Any]:
    """CPU µs per request on /health and /predict, limiter on and off, in interleaved blocks."""
    clients = {"on": make_app(True).test_client(), "off": make_app(False).test_client()}
    image = jpeg()
    result: dict[str, Any] = {}
    for path in ("/health", "/predict"):
        for client in clients.values():  # warm-up: first-call caches, lazy imports
            cpu_us_per_request(client, path, 20, image)
        samples: dict[str, list[float]] = {"on": [], "off": []}
        for block in range(BLOCKS):
            # Small alternating blocks: other load on a shared machine hits both states alike.
            order = ("on", "off") if block % 2 else ("off", "on")
            for state in order:
                samples[state].append(cpu_us_per_request(clients[state], path, count // BLOCKS, image))
        for state, values in samples.items():
            result[f"{path} {state}"] = round(statistics.mean(values), 1)
        paired = [on - off for on, off in zip(samples["on"], samples["off"], strict=True)]
        result[f"{path} extra_us_median_of_blocks"] = round(statistics.median(paired), 1)
    return result


def main() -> None:
    """Measure and write the JSON report."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    report = {"requests_per_state": count, "blocks": BLOCKS, "cpu_us_per_request": request_costs(count),
              **import_costs(), "python": sys.version.split()[0],
              "load_average_1min": round(os.getloadavg()[0], 2)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
