"""The web pages: an index of the models, a page per model (card, metrics, plots, drift), forms and /docs."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages blueprint."""
    from slimserve.web.pages import bp

    app.register_blueprint(bp)
