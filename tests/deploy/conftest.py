"""Run scripts/deploy/render_deploy.py as a subprocess against the loopback fake of Render."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy import fake_render

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "deploy" / "render_deploy.py"
# Timings shrunk so a whole scenario takes well under a second of polling.
FAST = ["--poll-interval", "0.01", "--smoke-interval", "0.02", "--request-timeout", "5",
        "--max-rate-limit-wait", "0.05"]


@dataclass
class Run:
    """What one run of the deploy script produced."""

    code: int
    stdout: str
    stderr: str
    summary: str

    @property
    def everything(self) -> str:
        """All text the run wrote anywhere a person (or a log) could read it."""
        return self.stdout + self.stderr + self.summary


@pytest.fixture
def fake() -> Iterator[Callable[..., fake_render.FakeRender]]:
    """Factory: start a fake Render for a scenario; every fake is stopped after the test."""
    started: list[fake_render.FakeRender] = []

    def make(**scenario: object) -> fake_render.FakeRender:
        server = fake_render.start(fake_render.Scenario(**scenario))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield make
    for server in started:
        fake_render.stop(server)


@pytest.fixture
def deploy(tmp_path: Path) -> Callable[..., Run]:
    """Run render_deploy.py in a clean environment; mode 'api', 'hook' or 'none' picks the credentials."""

    def run(server: fake_render.FakeRender, *args: str, mode: str = "api", deploy_timeout: float = 5.0,
            smoke_timeout: float = 0.3, service_url: bool = True) -> Run:
        summary = tmp_path / "summary.md"
        summary.write_text("")
        # No inherited RENDER_* or proxy variables: the script must see only what the test gives it.
        env = {"PATH": os.environ.get("PATH", ""), "GITHUB_STEP_SUMMARY": str(summary), "PYTHONUTF8": "1"}
        if mode == "api":
            env |= {"RENDER_API_KEY": server.scenario.api_key, "RENDER_SERVICE_ID": fake_render.SERVICE_ID,
                    "RENDER_API_BASE": server.url}
        elif mode == "hook":
            env["RENDER_DEPLOY_HOOK_URL"] = server.hook_url
        if service_url:
            env["RENDER_SERVICE_URL"] = server.url
        argv = [sys.executable, str(SCRIPT), "--commit", fake_render.NEW_COMMIT, *FAST,
                "--deploy-timeout", str(deploy_timeout), "--smoke-timeout", str(smoke_timeout), *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        return Run(done.returncode, done.stdout, done.stderr, summary.read_text())

    return run
