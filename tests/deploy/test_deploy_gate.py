"""scripts/deploy/deploy_gate.py against a loopback stand-in of the GitHub REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

GATE = Path(__file__).resolve().parents[2] / "scripts" / "deploy" / "deploy_gate.py"
REPO = "octo/slimserve"
HEAD, OLD = "a" * 40, "b" * 40
TOKEN = "ghs_gate_test_token"


def ci_run(run_id: int, sha: str, conclusion: str = "success", event: str = "push") -> dict[str, Any]:
    """A workflow run as GitHub's API returns it (the fields the gate reads)."""
    return {"id": run_id, "head_sha": sha, "conclusion": conclusion, "event": event, "head_branch": "main",
            "path": ".github/workflows/ci.yml"}


class GitHub:
    """What the stand-in answers: the head of main and the CI runs."""

    def __init__(self) -> None:
        self.head = HEAD
        self.runs = [ci_run(7, HEAD), ci_run(5, OLD)]
        self.paths: list[str] = []

    def answer(self, path: str) -> tuple[int, Any]:
        """Status and body for one GET."""
        parts, params = urlsplit(path).path.split("/"), parse_qs(urlsplit(path).query)
        if parts[-2:] == ["commits", "main"]:
            return 200, {"sha": self.head}
        if parts[-2] == "runs" and parts[-1].isdigit():
            found = [r for r in self.runs if r["id"] == int(parts[-1])]
            return (200, found[0]) if found else (404, {"message": "Not Found"})
        if parts[-1] == "runs":
            sha = params["head_sha"][0]
            return 200, {"workflow_runs": [r for r in self.runs if r["head_sha"] == sha
                                           and r["conclusion"] == params["status"][0]]}
        return 404, {"message": "Not Found"}


@pytest.fixture
def github() -> Iterator[tuple[GitHub, str]]:
    """A running stand-in and its base URL."""
    state = GitHub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            """Answer from the state; only a request with the token gets through."""
            state.paths.append(self.path)
            status, body = state.answer(self.path) if self.headers["Authorization"] == f"Bearer {TOKEN}" else (
                401, {"message": "Bad credentials"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def gate(base: str, tmp_path: Path, commit: str, ci_run_id: str = "") -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the gate as the Deploy workflow does; return the process and what it wrote to GITHUB_OUTPUT."""
    output = tmp_path / "output"
    output.write_text("")
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": base, "GITHUB_REPOSITORY": REPO, "DEPLOY_COMMIT": commit,
           "CI_RUN_ID": ci_run_id, "GITHUB_OUTPUT": str(output)}
    done = subprocess.run([sys.executable, str(GATE)], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    return done, output.read_text()


def test_the_head_of_main_with_its_successful_ci_run_may_deploy(github, tmp_path):
    state, base = github
    done, output = gate(base, tmp_path, HEAD, "7")
    assert done.returncode == 0, done.stderr
    assert output == "ci_run=7\n"
    assert f"/repos/{REPO}/commits/main" in state.paths[0]


def test_a_rerun_for_an_older_commit_is_refused(github, tmp_path):
    done, output = gate(github[1], tmp_path, OLD, "5")
    assert done.returncode == 1
    assert "not the current head of main" in done.stderr and output == ""


def test_a_ci_run_that_failed_is_refused(github, tmp_path):
    state, base = github
    state.runs[0]["conclusion"] = "failure"
    done, _ = gate(base, tmp_path, HEAD, "7")
    assert done.returncode == 1 and "conclusion is 'failure'" in done.stderr


def test_a_ci_run_of_another_commit_does_not_vouch_for_the_head(github, tmp_path):
    done, _ = gate(github[1], tmp_path, HEAD, "5")
    assert done.returncode == 1 and "head_sha" in done.stderr


def test_a_ci_run_from_a_pull_request_does_not_vouch(github, tmp_path):
    state, base = github
    state.runs[0]["event"] = "pull_request"
    done, _ = gate(base, tmp_path, HEAD, "7")
    assert done.returncode == 1 and "event" in done.stderr


def test_a_manual_dispatch_finds_the_successful_ci_run_of_the_head(github, tmp_path):
    done, output = gate(github[1], tmp_path, HEAD)
    assert done.returncode == 0, done.stderr
    assert output == "ci_run=7\n"


def test_a_manual_dispatch_without_a_successful_ci_run_is_refused(github, tmp_path):
    state, base = github
    state.runs = [ci_run(7, HEAD, conclusion="failure")]
    done, _ = gate(base, tmp_path, HEAD)
    assert done.returncode == 1 and "no successful CI run" in done.stderr


def test_an_unreachable_api_refuses_rather_than_allows(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done, output = gate(f"http://127.0.0.1:{port}", tmp_path, HEAD, "7")
    assert done.returncode == 1 and output == ""
    assert TOKEN not in done.stdout + done.stderr


def test_a_run_of_another_workflow_does_not_vouch(github, tmp_path):
    state, base = github
    state.runs[0]["path"] = ".github/workflows/other.yml@refs/heads/main"
    done, _ = gate(base, tmp_path, HEAD, "7")
    assert done.returncode == 1 and "other.yml" in done.stderr
