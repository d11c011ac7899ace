"""Accessors for the per-app objects the views use (set up by `create_app`)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from flask import current_app, g, request

from slimserve.paths import REPO_ROOT
from slimserve.registry import ModelEntry, ModelRegistry
from slimserve.service import PredictionService

if TYPE_CHECKING:
    from marshmallow import Schema


@functools.cache
def schema(name: str) -> Schema:
    """The one instance of a request/response schema, built at first use (the module costs ~4 ms at start-up)."""
    from slimserve import schemas

    return getattr(schemas, name)()


def registry() -> ModelRegistry:
    """The app's model registry."""
    return current_app.extensions["slimserve.registry"]


def service() -> PredictionService:
    """The app's prediction service."""
    return current_app.extensions["slimserve.service"]


def body_limit(entry: ModelEntry) -> int:
    """The largest request body the model's routes read: sized from the row limit for tabular models."""
    return current_app.extensions["slimserve.body_limits"][entry.manifest.name]


def prediction_target() -> ModelEntry | None:
    """The model the current prediction request reaches (as the service resolves it); None if none."""
    if "prediction_target" in g:  # access control asks before the view, the audit after it
        return g.prediction_target
    from slimserve.errors import SlimserveError
    from slimserve.service import MLFLOW, RECORDS
    from slimserve.views.predict import INVOCATIONS_ENDPOINTS, PREDICTION_ENDPOINTS

    req = request._get_current_object()
    entry = None
    if req.method == "POST" and req.endpoint in PREDICTION_ENDPOINTS:  # not a CORS preflight, which runs nothing
        try:
            fmt = MLFLOW if req.endpoint in INVOCATIONS_ENDPOINTS else RECORDS
            args = req.view_args or {}
            entry = service().resolve(args.get("name"), req.mimetype, fmt, args.get("version"))
        except SlimserveError:
            pass  # an unknown model: the route answers 404 (or 400) itself
    g.prediction_target = entry
    return entry


def git_commit() -> str | None:
    """The deployed commit: Render's variable, then the Docker build arg, then the local checkout."""
    config = current_app.config
    return config.get("RENDER_GIT_COMMIT") or config.get("GIT_COMMIT") or _local_commit()


@functools.cache
def _local_commit() -> str | None:
    import subprocess  # ~3 ms of start-up CPU saved; asked once, for /version or the first scrape

    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
