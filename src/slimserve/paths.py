"""Where things live: the checkout (bundled models) and the shared data folder. Computed here only.

slimserve is installed editable (`pip install -e .`, as `make run` and `make test` do), so the package
sits in `src/` of the checkout and the bundled artifacts are found beside it. Data sets are never in the
checkout: they live in `../shared` (override with `SLIMSERVE_SHARED`).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODELS = REPO_ROOT / "artifacts" / "models"
BUNDLED_MODEL = BUNDLED_MODELS / "pneumonia" / "2.0.0" / "model.h5"
BENCH_RESULTS = REPO_ROOT / "artifacts" / "bench"


def shared_root() -> Path:
    """The shared folder beside the checkout (`SLIMSERVE_SHARED` overrides it)."""
    return Path(os.environ.get("SLIMSERVE_SHARED") or REPO_ROOT.parent / "shared")


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder, e.g. `shared_data("heart_failure", "heart.csv")`."""
    return shared_root().joinpath("data", *parts)
