"""`slimserve drift simulate` against the real gunicorn server: the shift shows in /drift and /metrics."""

from __future__ import annotations

import json
import subprocess
import sys

from slimserve.paths import BUNDLED_MODELS
from tests.conftest import SHARED, needs_shared
from tests.server_process import REPO, ServerProcess


def simulate(port: int, *args: str) -> dict:
    """Run the command as a user would and parse its JSON."""
    done = subprocess.run([sys.executable, "-m", "slimserve", "drift", "simulate", "--model", "heart_failure",
                           "--url", f"http://127.0.0.1:{port}", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_simulated_shift_is_flagged_over_http_and_exported_to_prometheus():
    needs_shared(SHARED / "data" / "heart_failure" / "heart.csv")
    env = {"MODEL_PATH": str(BUNDLED_MODELS / "heart_failure" / "1.0.0"), "MODEL_REPOSITORY": "",
           "SLIMSERVE_RATE_LIMIT_ENABLED": "false", "SLIMSERVE_AUDIT_SINK": "off"}
    with ServerProcess(env) as server:
        server.wait_ready(timeout=120)
        calm = simulate(server.port, "--rows", "500", "--seed", "11")
        assert calm["status"] == "ok" and calm["answers"] == {"200": 20}
        shifted = simulate(server.port, "--rows", "500", "--seed", "12", "--shift", "Oldpeak=+1sd")
        assert shifted["status"] == "drift" and shifted["columns"]["Oldpeak"]["status"] == "drift"
        conn_text = _get_text(server.port, "/metrics")
        assert 'slimserve_drift_status{model="heart_failure",version="1.0.0"} 2.0' in conn_text
        assert 'slimserve_requests_total{method="POST",model="heart_failure",route="/models/<name>/predict",' \
               'status="200",version="1.0.0"} 40.0' in conn_text


def _get_text(port: int, path: str) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()
