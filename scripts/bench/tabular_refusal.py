"""Peak RSS and CPU of refusing oversized tabular bodies, each in a fresh child process.

`python -m scripts.bench.tabular_refusal [label]` writes `artifacts/bench/tabular_refusal[-label].json`.
Each case runs in its own child (`... --case NAME`): the app is built on the bundled heart_failure model
(ONNX Runtime, loaded synchronously), then one body is POSTed through the Flask test client; the child
reports its peak RSS (ru_maxrss) before and after the request and the CPU time of the request alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "artifacts" / "models" / "heart_failure" / "1.0.0"
UNDER_10_MB = 10 * 1024 * 1024 - 1024  # just inside SLIMSERVE_MAX_UPLOAD_BYTES, the old limit for every route
# The bodies of issue 7: ~10 MB of empty JSON objects (3.5 M rows), and ~10 MB of two-byte CSV rows (5.2 M).
JSON_BODY = ("application/json", lambda: b'{"dataframe_records": [' + b"{}," * (UNDER_10_MB // 3) + b"{}]}")
CSV_BODY = ("text/csv", lambda: b"Age\n" + b"1\n" * (UNDER_10_MB // 2))
# name -> (body, SLIMSERVE_MAX_TABLE_BYTES): the *_read cases lift the body limit to 10 MiB, so the body
# is read and the row pre-scan (or, before it existed, the full parse) has to refuse it.
CASES = {
    "json_empty_objects": (JSON_BODY, None),
    "csv_short_rows": (CSV_BODY, None),
    "json_empty_objects_read": (JSON_BODY, 10 * 1024 * 1024),
    "csv_short_rows_read": (CSV_BODY, 10 * 1024 * 1024),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(name: str) -> dict:
    """Build the app, POST one body, and measure (runs inside the child)."""
    from slimserve import create_app

    (mimetype, build), table_bytes = CASES[name]
    app = create_app({"MODEL_PATH": str(MODEL), "MODEL_REPOSITORY": None, "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False, "MAX_TABLE_BYTES": table_bytes})
    client = app.test_client()
    body = build()
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu, wall = _cpu(), time.perf_counter()
    response = client.post("/models/heart_failure/invocations", data=body, content_type=mimetype)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": name, "body_bytes": len(body), "max_table_bytes": table_bytes, "status": response.status_code,
            "code": (response.get_json() or {}).get("error", {}).get("code"),
            "peak_rss_mb_before_request": round(before_kb / 1024, 1), "peak_rss_mb": round(after_kb / 1024, 1),
            "request_cpu_s": round(cpu, 3), "request_wall_s": round(wall, 3)}


def main(argv: list[str]) -> None:
    """Run every case in a child process and write the JSON report."""
    if argv[:1] == ["--case"]:
        print(json.dumps(run_case(argv[1])))
        return
    label = f"-{argv[0]}" if argv else ""
    results = []
    for name in CASES:
        done = subprocess.run([sys.executable, "-m", "scripts.bench.tabular_refusal", "--case", name],
                              cwd=REPO, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1])
    out = REPO / "artifacts" / "bench" / f"tabular_refusal{label}.json"
    out.write_text(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
