"""The OpenAPI document and the browser upload page."""

from __future__ import annotations

import functools
from importlib import resources

from flask import Blueprint, Response, jsonify

bp = Blueprint("docs", __name__)


@functools.cache
def _spec() -> dict:
    # Built on first request: apispec is not imported during the cold start.
    from slimserve.openapi import build_spec

    return build_spec()


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document."""
    return jsonify(_spec())


@functools.cache
def _page() -> bytes:
    return resources.files("slimserve").joinpath("static/index.html").read_bytes()


@bp.get("/")
def upload_page():
    """A small page to upload an X-ray from a browser."""
    return Response(_page(), mimetype="text/html")
