"""slimserve: a lean HTTPS endpoint for medical models inside 256 MB of RAM and 0.1 vCPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slimserve import startup as _startup

__version__ = "0.1.0"

# Before any module of ours imports marshmallow: its import-time e-mail regexes (~20 ms of CPU, 0.2 s of
# cold start at 0.1 vCPU) are compiled at first use instead (an import hook; see slimserve.startup).
_startup.defer_marshmallow_regexes()

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask application (see `slimserve.app`)."""
    from slimserve.app import create_app as factory

    return factory(config)


__all__ = ["__version__", "create_app"]
