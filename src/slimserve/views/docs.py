"""The OpenAPI document (the pages, /docs included, live in slimserve.web)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from slimserve.views.context import registry

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document (built on first request: apispec is not imported during the cold start)."""
    cached = current_app.extensions.get("slimserve.openapi")
    if cached is None:
        from slimserve.openapi import build_spec

        manifests = [entry.manifest for entry in registry().entries.values()]
        table_default = current_app.extensions["slimserve.service"].default_table()
        cached = current_app.extensions["slimserve.openapi"] = build_spec(
            manifests, registry().default_name, current_app.config["MAX_ROWS"],
            table_default.manifest.name if table_default else None,
            [e.manifest for e in registry().all_entries() if e.manifest not in manifests])
        guard = current_app.extensions.get("slimserve.auth")
        if guard is not None:  # access control on: declare who may call which route
            from slimserve.auth.policy import document_security

            document_security(cached, guard, registry().default_name)
    return jsonify(cached)
