"""Configuration is read from the environment in one place."""

from __future__ import annotations

import pytest

from slimserve.config import from_env
from slimserve.paths import BUNDLED_MODEL


def test_defaults_serve_the_bundled_model():
    config = from_env({})
    assert config["MODEL_PATH"] == str(BUNDLED_MODEL)
    assert config["RUNTIME"] == "onnx" and config["INTRA_OP_THREADS"] == 1


def test_environment_overrides_defaults():
    config = from_env({"MODEL_PATH": "/m/x.h5", "SLIMSERVE_MAX_UPLOAD_BYTES": "2048", "SLIMSERVE_LOAD_ASYNC": "no"})
    assert config["MODEL_PATH"] == "/m/x.h5"
    assert config["MAX_UPLOAD_BYTES"] == 2048
    assert config["LOAD_ASYNC"] is False


@pytest.mark.parametrize("variable", ["SLIMSERVE_MAX_UPLOAD_BYTES", "SLIMSERVE_LOAD_ASYNC"])
def test_invalid_values_name_the_variable(variable):
    with pytest.raises(ValueError, match=variable):
        from_env({variable: "lots"})


def test_empty_model_repository_switches_it_off():
    assert from_env({"MODEL_REPOSITORY": ""})["MODEL_REPOSITORY"] is None
    assert from_env({})["MODEL_REPOSITORY"].endswith("artifacts/models")
