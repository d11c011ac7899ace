"""Helpers for the infrastructure tests: repository paths, YAML loading and the offline linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = Path(__file__).resolve().parent


def load_yaml(name: str) -> Any:
    """Parse a YAML file at the repository root."""
    return yaml.safe_load((REPO / name).read_text())


def tool(name: str) -> str:
    """Path of a command-line tool installed by requirements-dev.txt (next to this Python, else on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `pip install -r requirements-dev.txt` (make test does)")
    return found


def run(*argv: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository and capture its output."""
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def check_jsonschema(schema: str, *files: str) -> subprocess.CompletedProcess[str]:
    """Validate files against one of check-jsonschema's vendored (offline) schemas."""
    return run(tool("check-jsonschema"), "--builtin-schema", schema, *files)
