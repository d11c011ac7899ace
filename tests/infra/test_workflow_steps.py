"""The shell of the image hand-over steps, run for real with stand-ins for `docker` and `python` on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.infra.test_workflows import step_running, workflow

DIGEST = "sha256:" + "d" * 64
SHA = "e" * 40


def run_step(step: dict[str, Any], tmp_path: Path, env: dict[str, str], tools: dict[str, str]) -> \
        subprocess.CompletedProcess[str]:
    """Run a step's `run` with bash -e (as Actions does) in tmp_path, with the given fake tools first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> {tmp_path}/calls\n{body}\n")
        (bin_dir / name).chmod(0o755)
    full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), **env}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=30, check=False)


def push_step() -> dict[str, Any]:
    """CI's push step."""
    return step_running(workflow("ci.yml")["jobs"]["docker"], "docker push")


def test_ci_pushes_the_tested_image_under_a_lowercase_name_and_records_its_digest(tmp_path):
    docker = f'[ "$1 $2" = "image inspect" ] && echo "ghcr.io/octo/slimserve@{DIGEST}"; exit 0'
    done = run_step(push_step(), tmp_path, {"REPOSITORY": "ghcr.io/Octo/SlimServe", "GITHUB_SHA": SHA},
                    {"docker": docker})
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    tagged = f"ghcr.io/octo/slimserve:{SHA}"
    assert calls[:2] == [f"docker tag slimserve:ci {tagged}", f"docker push {tagged}"]
    assert (tmp_path / "image-ref.txt").read_text() == f"ghcr.io/octo/slimserve@{DIGEST}\n"


def test_ci_fails_when_the_push_gives_no_digest(tmp_path):
    docker = '[ "$1 $2" = "image inspect" ] && echo "<no value>"; exit 0'
    done = run_step(push_step(), tmp_path, {"REPOSITORY": "ghcr.io/octo/slimserve", "GITHUB_SHA": SHA},
                    {"docker": docker})
    assert done.returncode == 1 and "no digest" in done.stdout
    assert not (tmp_path / "image-ref.txt").exists()


def deploy_step() -> dict[str, Any]:
    """Deploy's step that runs render_deploy.py."""
    return step_running(workflow("deploy.yml")["jobs"]["deploy"], "render_deploy.py")


def test_deploy_passes_the_recorded_digest_to_the_script(tmp_path):
    (tmp_path / "image-ref.txt").write_text(f"ghcr.io/octo/slimserve@{DIGEST}\n")
    done = run_step(deploy_step(), tmp_path, {"REPOSITORY": "ghcr.io/Octo/slimserve"},
                    {"python": 'echo "DEPLOY_IMAGE_URL=$DEPLOY_IMAGE_URL" >> "$(dirname "$0")/../calls"'})
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["python scripts/deploy/render_deploy.py", f"DEPLOY_IMAGE_URL=ghcr.io/octo/slimserve@{DIGEST}"]


def test_deploy_refuses_an_image_of_another_repository_or_a_tag(tmp_path):
    for ref in (f"ghcr.io/mallory/slimserve@{DIGEST}", "ghcr.io/octo/slimserve:latest"):
        (tmp_path / "image-ref.txt").write_text(ref + "\n")
        done = run_step(deploy_step(), tmp_path, {"REPOSITORY": "ghcr.io/octo/slimserve"}, {"python": "exit 0"})
        assert done.returncode == 1 and "unexpected image reference" in done.stdout
        assert not (tmp_path / "calls").exists()
