"""Model metadata routes: what is served and exactly what input each model expects."""

from __future__ import annotations

from flask import Blueprint

from slimserve.imaging import MEDIA_TYPES
from slimserve.registry import ModelEntry, version_key
from slimserve.views.context import body_limit, registry, schema
from slimserve.web.card import read_card

bp = Blueprint("models", __name__)


def describe(entry: ModelEntry, default_name: str) -> dict:
    """Manifest-derived metadata of one model version, with the list of the model's versions."""
    m = entry.manifest
    reg = registry()
    versions, entry_default = reg.versions[m.name], reg.entries[m.name]
    return {
        "name": m.name,
        "version": m.version,
        "task": m.task,
        "description": m.description,
        "ready": entry.ready,
        "default": m.name == default_name and entry is entry_default,
        "labels": m.labels,
        "positive_label": m.positive_label,
        "threshold": m.threshold,
        "label_names": m.label_names,
        "input": m.input,
        "features": m.features,
        "accepts": ["application/json", "text/csv"] if entry.is_tabular else sorted(MEDIA_TYPES.values()),
        "max_body_bytes": body_limit(entry),
        "metrics": m.metrics,
        "source_sha256": m.source.sha256,
        "compiled_sha256": m.compiled.sha256 if m.compiled else None,
        "versions": [{"version": v, "default": e is entry_default, "ready": e.ready}
                     for v, e in sorted(versions.items(), key=lambda item: version_key(item[0]))],
        "refuses_out_of_scope": m.ood is not None,
        "explains": m.cam is not None,
        "model_card": read_card(m.folder),
    }


@bp.get("/models")
def list_models():
    """Every served model."""
    reg = registry()
    return schema("ModelListSchema").dump({
        "default_model": reg.default_name,
        "models": [describe(entry, reg.default_name) for entry in reg.entries.values()],
    })


@bp.get("/models/<name>")
def get_model(name: str):
    """One model's metadata, including its input contract."""
    reg = registry()
    return schema("ModelSchema").dump(describe(reg.get(name), reg.default_name))


@bp.get("/models/<name>/ready")
def model_ready(name: str):
    """Readiness of one model."""
    entry = registry().get(name)
    body = schema("ReadySchema").dump({"ready": entry.ready, "models": {name: entry.state}})
    return body, (200 if entry.ready else 503)


@bp.get("/models/<name>/versions/<version>")
def get_version(name: str, version: str):
    """One version's metadata."""
    reg = registry()
    return schema("ModelSchema").dump(describe(reg.get(name, version), reg.default_name))
