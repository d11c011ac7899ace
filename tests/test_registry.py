"""Start-up checks: the server refuses stale or missing compiled artifacts with a clear message."""

from __future__ import annotations

import json

import pytest

from slimserve import create_app
from slimserve.errors import ModelConfigError
from slimserve.registry import build_registry, discover_manifests
from tests.conftest import write_fake_model


def build(path, fake_runtimes, **kwargs):
    """The registry for `path` with fake runtimes and no auto-compile."""
    return build_registry(str(path), "onnx", runtimes=fake_runtimes, auto_compile=False, **kwargs)


def test_changed_h5_is_refused_as_stale(model_path, fake_runtimes):
    model_path.write_bytes(b"retrained weights")
    with pytest.raises(ModelConfigError, match=r"stale compiled model: model\.h5 changed since it was compiled"):
        create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "AUTO_COMPILE": False})


def test_missing_onnx_without_tensorflow_is_refused_with_the_fix(model_path, fake_runtimes):
    model_path.with_suffix(".onnx").unlink()
    with pytest.raises(ModelConfigError, match=r"no compiled ONNX model .*off.*python -m slimserve compile"):
        build(model_path, fake_runtimes)


def test_tampered_onnx_is_refused(model_path, fake_runtimes):
    model_path.with_suffix(".onnx").write_bytes(b"something else")
    with pytest.raises(ModelConfigError, match=r"model\.onnx changed since it was compiled"):
        build(model_path, fake_runtimes)


def test_missing_manifest_names_the_compile_command(tmp_path, fake_runtimes):
    (tmp_path / "x.h5").write_bytes(b"h5")
    with pytest.raises(ModelConfigError, match=r"no manifest.json beside .* slimserve compile"):
        build(tmp_path / "x.h5", fake_runtimes)


def test_missing_model_path_is_refused(tmp_path, fake_runtimes):
    with pytest.raises(ModelConfigError, match="MODEL_PATH does not exist"):
        build(tmp_path / "nope.h5", fake_runtimes)


def test_invalid_manifest_is_refused_with_the_field(model_path, fake_runtimes):
    manifest = model_path.parent / "manifest.json"
    data = json.loads(manifest.read_text())
    data["threshold"] = 7
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelConfigError, match="threshold"):
        build(model_path, fake_runtimes)


def test_model_path_may_name_the_folder(model_path, fake_runtimes):
    assert list(build(model_path.parent, fake_runtimes).entries) == ["pneumonia"]


def test_a_folder_of_model_folders_loads_every_model(tmp_path, fake_runtimes):
    write_fake_model(tmp_path / "a", name="alpha")
    write_fake_model(tmp_path / "b", name="beta")
    registry = build(tmp_path, fake_runtimes, default="beta")
    assert sorted(registry.entries) == ["alpha", "beta"] and registry.default_name == "beta"


def test_unknown_runtime_is_refused(model_path):
    with pytest.raises(ModelConfigError, match="unknown runtime 'torch'"):
        build_registry(str(model_path), "torch", auto_compile=False)


def test_discover_finds_nothing_in_an_empty_folder(tmp_path):
    with pytest.raises(ModelConfigError, match=r"no manifest.json under"):
        discover_manifests(tmp_path)


def test_repository_adds_every_other_model_and_keeps_the_default(tmp_path, fake_runtimes):
    default = write_fake_model(tmp_path / "repo" / "pneumonia", name="pneumonia")
    write_fake_model(tmp_path / "repo" / "other", name="other")
    registry = build(default, fake_runtimes, repository=str(tmp_path / "repo"))
    assert sorted(registry.entries) == ["other", "pneumonia"] and registry.default_name == "pneumonia"
