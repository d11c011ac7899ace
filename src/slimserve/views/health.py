"""Liveness, readiness and version routes."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from flask import Blueprint, Response, current_app

from slimserve import __version__
from slimserve.registry import ModelRegistry
from slimserve.views.context import git_commit, registry, schema

bp = Blueprint("health", __name__)


def health_state() -> tuple[dict, int]:
    """Liveness body and status."""
    return {"status": "ok"}, 200


def ready_state(reg: ModelRegistry) -> tuple[dict, int]:
    """Readiness body and status: 200 once every model is loaded, 503 until then."""
    # Default versions by name; every other served version as name@version.
    models = {name if e is reg.entries[name] else f"{name}@{e.manifest.version}": e.state
              for name in reg.versions for e in reg.versions[name].values()}
    ready = reg.ready
    return {"ready": ready, "models": models}, (200 if ready else 503)


def probes(reg: ModelRegistry) -> dict[str, Callable[[], tuple[int, bytes]]]:
    """The probes the buffering worker answers in its event loop, never behind predictions (same bodies)."""
    def answer(state: Callable[[], tuple[dict, int]]) -> Callable[[], tuple[int, bytes]]:
        def probe() -> tuple[int, bytes]:
            body, status = state()
            return status, orjson.dumps(body)
        return probe

    return {"/health": answer(health_state), "/ready": answer(lambda: ready_state(reg))}


@bp.get("/health")
def health():
    """Liveness: the process answers. Cheap; never touches the model."""
    body, status = health_state()
    return schema("HealthSchema").dump(body), status


@bp.get("/ready")
def ready():
    """Readiness: 200 once every model is loaded, 503 until then."""
    body, status = ready_state(registry())
    return schema("ReadySchema").dump(body), status


@bp.get("/ping")
def ping():
    """MLflow's health check: 200 with an empty line once the models are loaded."""
    return Response("\n", status=200 if registry().ready else 503, mimetype="application/json")


@bp.get("/version")
def version():
    """Service version, deployed git commit and model versions."""
    reg = registry()
    return schema("VersionSchema").dump({
        "service": "slimserve",
        "version": __version__,
        "git_commit": git_commit(),
        "image_digest": current_app.config.get("IMAGE_DIGEST"),
        "runtime": current_app.config["RUNTIME"],
        "default_model": reg.default_name,
        "models": [{"name": e.manifest.name, "version": e.manifest.version} for e in reg.all_entries()],
        "auth": "on" if "slimserve.auth" in current_app.extensions else "off",
    })
