"""The Dockerfile and .dockerignore: hadolint-clean, and the structure the service relies on."""

from __future__ import annotations

import fnmatch
import json
import re

from slimserve.paths import BUNDLED_MODEL, REPO_ROOT
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


def runtime() -> Stage:
    """The image's only stage."""
    (only,) = stages().values()
    return only


def test_one_stage_from_python_311_slim():
    assert args_of(runtime(), "FROM") == ["python:3.11-slim"]


def test_no_tensorflow_and_no_dev_requirements_anywhere_in_the_build():
    commands = " ".join(args for name, args in runtime() if name in ("RUN", "COPY")).lower()
    assert "pip install --no-cache-dir -r requirements.txt" in commands
    assert "requirements-dev" not in commands and "tensorflow" not in commands
    assert "slimserve compile" not in commands
    assert "apt-get" not in commands, "no compilers or system packages in the image"
    assert not sent_to_docker("requirements-dev.txt")


def test_the_build_verifies_the_bundled_models_against_their_manifests():
    runs = args_of(runtime(), "RUN")
    (verify,) = [run for run in runs if "python -m slimserve check artifacts/models" in run]
    order = runtime()
    assert order.index(("RUN", verify)) > order.index(("COPY", "artifacts/models ./artifacts/models"))
    assert order.index(("RUN", verify)) > order.index(("COPY", "src ./src"))


def test_layers_go_from_dependencies_to_models_to_code_and_the_commit_comes_last():
    order = [(name, args) for name, args in runtime() if name in ("COPY", "RUN", "ARG", "ENV")]
    position = {key: next(i for i, (name, args) in enumerate(order) if needle in f"{name} {args}")
                for key, needle in (("deps", "pip install"), ("models", "COPY artifacts/models"),
                                    ("code", "COPY src"), ("arg", "ARG GIT_COMMIT"),
                                    ("env", "ENV GIT_COMMIT"))}
    assert position["deps"] < position["models"] < position["code"] < position["arg"] < position["env"]
    assert all(name not in ("RUN", "COPY") for name, _ in order[position["arg"]:]), \
        "nothing after the commit may run or copy: each commit would rebuild it"


def test_runtime_runs_as_a_non_root_user():
    (user,) = args_of(runtime(), "USER")
    assert user.split(":")[0] not in {"root", "0"}


def test_runtime_environment_defaults():
    env = " ".join(args_of(runtime(), "ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "GIT_COMMIT=${GIT_COMMIT}", "PORT=8000"):
        assert setting in env
    assert "GIT_COMMIT" in " ".join(args_of(runtime(), "ARG"))


def test_the_package_is_installed_not_put_on_a_path():
    # gunicorn, `python -m slimserve` and `slimserve` import the installed package (issue 12: no path hacks).
    runs = " ".join(args_of(runtime(), "RUN"))
    assert "pip install --no-cache-dir --no-deps -e ." in runs
    assert "PYTHONPATH" not in " ".join(args_of(runtime(), "ENV"))


def test_model_path_default_is_the_bundled_model_the_app_expects():
    env = " ".join(args_of(runtime(), "ENV"))
    expected = "/app/" + BUNDLED_MODEL.relative_to(REPO_ROOT).as_posix()
    assert f"MODEL_PATH={expected}" in env


def test_exposes_8000_and_checks_health_with_python():
    stage = runtime()
    assert args_of(stage, "EXPOSE") == ["8000"]
    (check,) = args_of(stage, "HEALTHCHECK")
    assert "/health" in check and "urllib.request" in check and "curl" not in check


def test_command_is_gunicorn_with_the_repo_config():
    (cmd,) = args_of(runtime(), "CMD")
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
    for path in ("requirements-dev.txt", "artifacts/models/aids/1.0.0/roc.png",
                 ".git/config", ".venv/bin/python", "tests/test_config.py", "tests/data/sample_xray.jpeg",
                 "data/x.csv", "artifacts/bench/runtime_size.json", ".pytest_cache/v", ".ruff_cache/x",
                 "src/slimserve/__pycache__/app.cpython-311.pyc", "scripts/training/train.py"):
        assert not sent_to_docker(path), path


def test_dockerignore_sends_what_the_image_needs():
    for path in ("src/slimserve/app.py", "scripts/deploy/gunicorn.conf.py", "scripts/deploy/deploy.py",
                 "artifacts/models/pneumonia/2.0.0/model.h5", "artifacts/models/pneumonia/2.0.0/model.onnx",
                 "artifacts/models/pneumonia/2.0.0/manifest.json", "requirements.txt", "pyproject.toml"):
        assert sent_to_docker(path), path
