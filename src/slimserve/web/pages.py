"""The pages blueprint: index, model page, try-it page (upload or form), training plots and /docs.

Pages are rendered on the server from the registry; the scripts and styles they load are files of this
package (`/static/web/…`) and Swagger UI's files from the installed `flask_swagger_ui` package, so the
page CSP can stay `script-src 'self'` with no inline code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory

from slimserve.registry import ModelEntry
from slimserve.views.context import registry
from slimserve.views.models import describe
from slimserve.web.card import load_card

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/web")
# The Swagger UI files /docs needs, and nothing else of the package.
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                           "favicon-32x32.png", "favicon-16x16.png"})


def access_of(name: str) -> str:
    """public, key or mfa: what a caller needs to use the model (public when access control is off)."""
    guard = current_app.extensions.get("slimserve.auth")
    return guard.policies.get(name, "key") if guard is not None else "public"


def plots_of(entry: ModelEntry) -> list[str]:
    """The training plots (PNG files) in the model's folder."""
    return sorted(p.name for p in entry.manifest.folder.glob("*.png"))


def versions_of(entry: ModelEntry) -> list[dict]:
    """Every version folder beside the served one, and which one is served."""
    parent = entry.manifest.folder.parent
    found = sorted(p.parent.name for p in parent.glob("*/manifest.json")) if parent.is_dir() else []
    served = entry.manifest.version
    return [{"version": v, "served": v == served} for v in (found if served in found else [*found, served])]


def model_view(entry: ModelEntry) -> dict:
    """What the templates need about one model."""
    info = describe(entry, registry().default_name)
    return {**info, "access": access_of(entry.manifest.name), "is_tabular": entry.is_tabular}


@bp.get("/")
def index():
    """Every served model, with links to its page and its try-it page."""
    models = [model_view(e) for e in registry().entries.values()]
    return render_template("index.html", models=models, title="Models")


@bp.get("/pages/<name>")
def model_page(name: str):
    """Model card, metrics, training plots, versions and drift of one model."""
    entry = registry().get(name)
    return render_template("model.html", model=model_view(entry), card=load_card(entry.manifest.folder),
                           plots=plots_of(entry), versions=versions_of(entry),
                           has_drift=name in current_app.extensions.get("slimserve.drift", {}).get("monitors", {}),
                           title=name)


@bp.get("/pages/<name>/try")
def try_page(name: str):
    """The X-ray upload page of an image model, or the form of a tabular model."""
    entry = registry().get(name)
    template = "try_table.html" if entry.is_tabular else "try_image.html"
    return render_template(template, model=model_view(entry), title=f"Try {name}")


@bp.get("/pages/<name>/plots/<filename>")
def plot(name: str, filename: str):
    """One training plot of the model (only the PNG files listed on its page)."""
    entry = registry().get(name)
    if filename not in plots_of(entry):
        abort(404)
    return send_from_directory(entry.manifest.folder, filename, mimetype="image/png", max_age=3600)


def swagger_dist() -> Path | None:
    """The folder of Swagger UI's files in the installed flask_swagger_ui package."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@bp.get("/docs")
def docs():
    """Swagger UI on /openapi.json."""
    if swagger_dist() is None:
        abort(404)
    return render_template("docs.html", title="API documentation")


@bp.get("/static/swagger/<filename>")
def swagger_file(filename: str):
    """A Swagger UI file from the installed package."""
    dist = swagger_dist()
    if dist is None or filename not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(dist, filename, max_age=86400)
