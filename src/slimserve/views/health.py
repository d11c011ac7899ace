"""Liveness, readiness and version routes."""

from __future__ import annotations

from flask import Blueprint, current_app

from slimserve import __version__
from slimserve.schemas import HealthSchema, ReadySchema, VersionSchema
from slimserve.views.context import git_commit, registry

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Liveness: the process answers. Cheap; never touches the model."""
    return HealthSchema().dump({"status": "ok"})


@bp.get("/ready")
def ready():
    """Readiness: 200 once every model is loaded, 503 until then."""
    models = {
        name: ("ready" if entry.ready else "failed" if entry.error else "loading")
        for name, entry in registry().entries.items()
    }
    body = ReadySchema().dump({"ready": registry().ready, "models": models})
    return body, (200 if body["ready"] else 503)


@bp.get("/version")
def version():
    """Service version, deployed git commit and model versions."""
    reg = registry()
    return VersionSchema().dump({
        "service": "slimserve",
        "version": __version__,
        "git_commit": git_commit(),
        "image_digest": current_app.config.get("IMAGE_DIGEST"),
        "runtime": current_app.config["RUNTIME"],
        "default_model": reg.default_name,
        "models": [{"name": e.manifest.name, "version": e.manifest.version} for e in reg.entries.values()],
    })
