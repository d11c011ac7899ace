"""The manifest format: one schema, strict about what it accepts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from slimserve.errors import ModelConfigError
from slimserve.manifest import Feature, compiled_record, load_manifest, parse_manifest, save_manifest, sha256_file
from slimserve.paths import BUNDLED_MODELS

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


TABULAR = {
    "name": "table", "version": "1", "task": "tabular_classification", "labels": ["S", "I", "R"],
    "activation": "softmax", "features": [{"name": "mic", "type": "number", "minimum": 0.5}],
    "source": {"file": "model.onnx", "sha256": "b" * 64},
}


def test_saved_form_leaves_out_unset_fields_and_the_threshold_of_an_argmax_model(tmp_path):
    save_manifest(parse_manifest(TABULAR, tmp_path))
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert "threshold" not in saved and "positive_label" not in saved and "input" not in saved
    assert "label_names" not in saved and "compiled" not in saved
    assert saved["features"] == [{"name": "mic", "type": "number", "description": "", "minimum": 0.5,
                                  "required": True, "nullable": False, "zero_means_missing": False}]
    assert load_manifest(tmp_path) == parse_manifest(TABULAR, tmp_path)


def test_saved_form_keeps_the_threshold_of_a_binary_model(tmp_path):
    save_manifest(parse_manifest({**VALID, "threshold": 0.3}, tmp_path))
    assert json.loads((tmp_path / "manifest.json").read_text())["threshold"] == 0.3


def test_save_refuses_what_the_server_would_refuse(tmp_path):
    manifest = replace(parse_manifest(TABULAR, tmp_path), features=[Feature("mic", "category")])
    with pytest.raises(ModelConfigError, match="categories"):
        save_manifest(manifest)
    assert not (tmp_path / "manifest.json").exists()


def test_compiled_record_hashes_the_onnx_file_and_defaults_to_being_its_own_source(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"graph")
    record = compiled_record(onnx, tool="t 1", opset=17, max_abs_diff=1e-7)
    assert record.file == "model.onnx" and record.sha256 == record.source_sha256 == sha256_file(onnx)
    assert compiled_record(onnx, tool="t", opset=17, max_abs_diff=0, source_sha256="c" * 64).source_sha256 == "c" * 64


@pytest.mark.parametrize("path", sorted(BUNDLED_MODELS.glob("*/*/manifest.json")), ids=lambda p: p.parent.parent.name)
def test_committed_manifests_are_in_the_form_the_schema_writes(path):
    canonical = json.dumps(load_manifest(path.parent).to_dict(), indent=2) + "\n"
    assert path.read_text(encoding="utf-8") == canonical
