"""Local use: with no keys and no issuer everything is open, said loudly — and costs no imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from slimserve import create_app
from tests.auth_support import REPO
from tests.conftest import write_fake_tabular_model

RECORD = {"Age": 50, "Sex": "M", "Cholesterol": 200, "FastingBS": False}
# Run in a fresh interpreter: this test process has long imported PyJWT and friends.
PROBE = """
import json, sys
from slimserve import create_app
from tests.conftest import FakeRuntime, write_fake_tabular_model
import pathlib, tempfile
folder = pathlib.Path(tempfile.mkdtemp())
app = create_app({"MODEL_PATH": str(write_fake_tabular_model(folder / "heart")), "MODEL_REPOSITORY": None,
                  "RUNTIMES": {"onnx": FakeRuntime}, "LOAD_ASYNC": False, "AUTO_COMPILE": False, **CONFIG})
status = app.test_client().post("/models/heart/predict", json={"records": [RECORD]},
                                headers={"X-API-Key": KEY}).status_code
names = ("slimserve.auth", "slimserve.auth.keys", "slimserve.auth.tokens", "jwt", "cryptography", "psycopg")
print(json.dumps({"status": status, "loaded": [n for n in names if n in sys.modules]}))
"""


def imported_after_a_request(config: dict, key: str = "") -> dict:
    """Create the app with `config` in a fresh interpreter, make one request; what got imported?"""
    code = f"CONFIG = {config!r}\nKEY = {key!r}\nRECORD = {RECORD!r}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                          env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "MODEL_REPOSITORY": ""})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_auth_off_imports_nothing_of_access_control():
    """No keys, no issuer: a clinical request is served and neither slimserve.auth nor PyJWT is loaded."""
    assert imported_after_a_request({}) == {"status": 200, "loaded": []}


def test_keys_only_never_import_pyjwt_or_psycopg():
    """With keys but no issuer (and no database), the token and database libraries stay unloaded."""
    from slimserve.auth.keys import create_key

    key, entry = create_key("n", ["heart"])
    result = imported_after_a_request({"API_KEYS": entry.line()}, key)
    assert result["status"] == 200
    assert "slimserve.auth" in result["loaded"]
    assert not {"jwt", "cryptography", "psycopg", "slimserve.auth.tokens"} & set(result["loaded"])


@pytest.fixture
def open_app(tmp_path, fake_runtimes):
    """An app with no access control configured."""
    return create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                       "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUDIT_SINK": "off"})


def test_auth_off_serves_clinical_models_and_says_so(open_app, caplog):
    """/version says auth off; clinical requests work without credentials."""
    client = open_app.test_client()
    assert client.get("/version").get_json()["auth"] == "off"
    assert client.post("/models/heart/predict", json={"records": [RECORD]}).status_code == 200


def test_start_up_warns_loudly_when_auth_is_off(tmp_path, fake_runtimes, caplog):
    """The factory logs a WARNING that every model is open."""
    caplog.set_level("WARNING")
    create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUDIT_SINK": "off"})
    assert "ACCESS CONTROL IS OFF" in caplog.text


def test_required_without_keys_refuses_clinical_models(tmp_path, fake_runtimes):
    """SLIMSERVE_AUTH=required (render.yaml) with no keys: clinical requests are refused, not opened."""
    app = create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUDIT_SINK": "off", "AUTH": "required"})
    client = app.test_client()
    assert client.post("/models/heart/predict", json={"records": [RECORD]}).status_code == 401
    assert client.get("/version").get_json()["auth"] == "on"


def test_required_is_read_from_the_environment(monkeypatch, tmp_path, fake_runtimes):
    """SLIMSERVE_AUTH from the environment switches enforcement on (as render.yaml sets it)."""
    monkeypatch.setenv("SLIMSERVE_AUTH", "required")
    app = create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                      "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUDIT_SINK": "off"})
    assert app.test_client().post("/models/heart/predict", json={"records": [RECORD]}).status_code == 401


@pytest.mark.parametrize("config", [{"AUTH": "maybe"}, {"MODEL_ACCESS": "heart=secret"},
                                    {"MODEL_ACCESS": "nosuchmodel=key"},
                                    {"OIDC_ISSUER": "https://idp.example", "OIDC_AUDIENCE": "x"}])
def test_bad_access_settings_fail_start_up(tmp_path, fake_runtimes, config):
    """A misconfiguration stops the factory rather than silently opening models."""
    with pytest.raises(ValueError):
        create_app({"MODEL_PATH": str(write_fake_tabular_model(tmp_path / "heart")), "RUNTIMES": fake_runtimes,
                    "LOAD_ASYNC": False, "AUTO_COMPILE": False, "AUDIT_SINK": "off", **config})
