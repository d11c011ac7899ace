"""The Dockerfile and .dockerignore: hadolint-clean, and the structure the service relies on."""

from __future__ import annotations

import fnmatch
import json
import re

from slimserve.config import BUNDLED_MODEL, REPO_ROOT
from tests.infra.tools import REPO, run, tool

Stage = list[tuple[str, str]]  # (INSTRUCTION, arguments) in order


def stages() -> dict[str, Stage]:
    """Instructions of each build stage, by stage name, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    result: dict[str, Stage] = {}
    current: Stage = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            current = []
            result[args.split()[-1] if " AS " in args.upper() else str(len(result))] = current
        current.append((instruction.upper(), " ".join(args.split())))
    return result


def args_of(stage: Stage, instruction: str) -> list[str]:
    """Arguments of every occurrence of one instruction in a stage."""
    return [args for name, args in stage if name == instruction]


def test_hadolint_passes():
    done = run(tool("hadolint"), "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_two_stages_both_from_python_311_slim():
    found = stages()
    assert list(found) == ["build", "runtime"]
    for stage in found.values():
        assert args_of(stage, "FROM")[0].startswith("python:3.11-slim ")


def test_build_stage_compiles_every_bundled_h5():
    build = stages()["build"]
    assert any("requirements-dev.txt" in args for args in args_of(build, "RUN"))
    assert any("find artifacts/models -name '*.h5'" in a and "python -m slimserve compile" in a
               for a in args_of(build, "RUN"))


def test_runtime_stage_installs_only_the_runtime_requirements():
    runtime = stages()["runtime"]
    text = " ".join(args for _, args in runtime).lower()
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert "requirements-dev" not in text and "tensorflow" not in text
    assert "apt-get" not in text, "no compilers or system packages in the runtime image"


def test_runtime_copies_compiled_models_from_the_build_stage():
    copies = args_of(stages()["runtime"], "COPY")
    assert "--from=build /app/artifacts/models ./artifacts/models" in copies


def test_runtime_runs_as_a_non_root_user():
    (user,) = args_of(stages()["runtime"], "USER")
    assert user.split(":")[0] not in {"root", "0"}


def test_runtime_environment_defaults():
    env = " ".join(args_of(stages()["runtime"], "ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PYTHONPATH=/app/src",
                    "GIT_COMMIT=${GIT_COMMIT}", "PORT=8000"):
        assert setting in env
    assert "GIT_COMMIT" in " ".join(args_of(stages()["runtime"], "ARG"))


def test_model_path_default_is_the_bundled_model_the_app_expects():
    env = " ".join(args_of(stages()["runtime"], "ENV"))
    expected = "/app/" + BUNDLED_MODEL.relative_to(REPO_ROOT).as_posix()
    assert f"MODEL_PATH={expected}" in env


def test_exposes_8000_and_checks_health_with_python():
    runtime = stages()["runtime"]
    assert args_of(runtime, "EXPOSE") == ["8000"]
    (check,) = args_of(runtime, "HEALTHCHECK")
    assert "/health" in check and "urllib.request" in check and "curl" not in check


def test_command_is_gunicorn_with_the_repo_config():
    (cmd,) = args_of(stages()["runtime"], "CMD")
    assert json.loads(cmd) == ["gunicorn", "-c", "scripts/deploy/gunicorn.conf.py"]


def sent_to_docker(path: str) -> bool:
    """Whether .dockerignore lets a path into the build context (last matching rule wins, parents count)."""
    keep = True
    for rule in (REPO / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/"))
               for p in prefixes):
            keep = negate
    return keep


def test_dockerignore_keeps_data_venvs_tests_caches_and_git_out():
    for path in (".git/config", ".venv/bin/python", "tests/test_config.py", "tests/data/sample_xray.jpeg",
                 "data/x.csv", "artifacts/bench/runtime_size.json", ".pytest_cache/v", ".ruff_cache/x",
                 "src/slimserve/__pycache__/app.cpython-311.pyc", "scripts/training/train.py"):
        assert not sent_to_docker(path), path


def test_dockerignore_sends_what_the_image_needs():
    for path in ("src/slimserve/app.py", "scripts/deploy/gunicorn.conf.py", "scripts/deploy/deploy.py",
                 "artifacts/models/pneumonia/1.0.0/model.h5", "requirements.txt", "requirements-dev.txt"):
        assert sent_to_docker(path), path
