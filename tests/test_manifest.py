"""The manifest format: one schema, strict about what it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimserve.errors import ModelConfigError
from slimserve.manifest import load_manifest, parse_manifest, save_manifest

VALID = {
    "name": "pneumonia", "version": "1.0.0", "task": "image_classification",
    "labels": ["NORMAL", "PNEUMONIA"], "input": {"height": 28, "width": 28},
    "source": {"file": "model.h5", "sha256": "a" * 64},
}


def test_defaults_fill_the_image_contract():
    manifest = parse_manifest(VALID, Path("/m"))
    assert manifest.input.shape == (28, 28, 1)
    assert manifest.input.scale == pytest.approx(1 / 255)
    assert manifest.source_path == Path("/m/model.h5") and manifest.compiled_path is None


def test_round_trip_through_disk(tmp_path):
    manifest = parse_manifest(VALID, tmp_path)
    save_manifest(manifest)
    assert load_manifest(tmp_path / "model.h5") == manifest


@pytest.mark.parametrize(("change", "field"), [
    ({"unknown_key": 1}, "unknown_key"),
    ({"labels": ["A", "B", "C"]}, "labels"),
    ({"positive_label": "OTHER"}, "positive_label"),
    ({"input": {"height": 28, "width": 28, "color": "rgb", "channels": 1}}, "channels"),
    ({"input": {"height": 28, "width": 28, "resize": "magic"}}, "resize"),
    ({"name": "../escape"}, "name"),
    ({"source": {"file": "model.h5", "sha256": "xyz"}}, "sha256"),
])
def test_invalid_manifests_are_refused_naming_the_field(change, field):
    with pytest.raises(ModelConfigError, match=field):
        parse_manifest({**VALID, **change}, Path("/m"))
