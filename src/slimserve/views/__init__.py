"""HTTP views: parse and validate requests, call the service, serialize responses. Nothing else."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register every route and the error handlers.

    Routes: `views.predict` (`/predict`, `/models/<name>/predict`, `/invocations`,
    `/models/<name>/invocations`), `views.health` (`/health`, `/ready`, `/ping`, `/version`),
    `views.models` (`/models`, `/models/<name>`, `/models/<name>/ready`), `views.docs` (`/openapi.json`, `/`).
    """
    from slimserve.views import docs, errors, health, models, predict

    errors.init_app(app)
    predict.init_app(app, app.extensions["slimserve.service"], app.extensions["slimserve.body_limits"])
    for module in (health, models, docs):
        app.register_blueprint(module.bp)
