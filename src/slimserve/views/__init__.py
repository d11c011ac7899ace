"""HTTP views: parse and validate requests, call the service, serialize responses. Nothing else."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register every blueprint and the error handlers."""
    from slimserve.views import docs, errors, health, invocations, models, predict

    errors.init_app(app)
    for module in (health, predict, invocations, models, docs):
        app.register_blueprint(module.bp)
