"""slimserve: a lean HTTPS endpoint for medical models inside 256 MB of RAM and 0.1 vCPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask application (see `slimserve.app`)."""
    from slimserve.app import create_app as factory

    return factory(config)


__all__ = ["__version__", "create_app"]
