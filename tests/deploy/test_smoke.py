"""scripts/deploy/smoke.py on its own, as CI runs it against the container."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.deploy.fake_render import OLD_COMMIT

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "deploy" / "smoke.py"


def smoke(url: str, commit: str) -> subprocess.CompletedProcess[str]:
    """Run the smoke CLI with short waits."""
    argv = [sys.executable, str(SMOKE), "--url", url, "--commit", commit, "--wait", "0.3", "--interval", "0.05"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env={})


def test_smoke_cli_passes_against_a_healthy_service_and_prints_the_prediction(fake):
    done = smoke(fake().url, OLD_COMMIT)
    assert done.returncode == 0, done.stderr
    assert '"prediction": "PNEUMONIA"' in done.stdout


def test_smoke_cli_fails_when_version_shows_another_commit(fake):
    done = smoke(fake().url, "0" * 40)
    assert done.returncode == 1
    assert "expected '0000" in done.stderr


def test_smoke_cli_fails_when_nothing_listens():
    with socket.socket() as probe:  # a port that was free a moment ago, now closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = smoke(f"http://127.0.0.1:{port}", OLD_COMMIT)
    assert done.returncode == 1
    assert "smoke test FAILED" in done.stderr
