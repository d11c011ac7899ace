"""Start-up work deferred to first use: what `create_app` leaves unimported, and that it still works later."""

from __future__ import annotations

import json
import subprocess
import sys

from flask import url_for
from marshmallow import ValidationError
from marshmallow.validate import Email

from slimserve import create_app, startup
from slimserve.app import LazyBuilderRule
from tests.conftest import image_bytes

START_UP = """
import io, json, sys
from pathlib import Path
from slimserve import create_app
app = create_app({"LOAD_ASYNC": False, "MODEL_REPOSITORY": ""})
deferred = ("prometheus_client", "slimserve.ratelimit_counters", "apispec", "slimserve.payloads", "slimserve.schemas")
print("AT_START", sorted(m for m in deferred if m in sys.modules))
from marshmallow.validate import Email
print("EMAIL_REGEX", type(Email.USER_REGEX).__name__, Email.USER_REGEX._compiled is None)
client = app.test_client()
xray = Path("tests/data/sample_xray.png").read_bytes()  # the bundled model refuses what is not an X-ray
first = client.post("/predict", data={"file": (io.BytesIO(xray), "x.png")})
print("FIRST", first.status_code, "prometheus_client" in sys.modules)
first.close()  # what the server does once the body is sent
print("AFTER_CLOSE", "prometheus_client" in sys.modules)
text = client.get("/metrics").get_data(as_text=True)
print("COUNTED", json.dumps([line for line in text.splitlines() if line.startswith("slimserve_requests_total{")]))
"""


def test_create_app_defers_metrics_limits_and_schemas_and_counts_the_first_request():
    done = subprocess.run([sys.executable, "-c", START_UP], capture_output=True, text=True, timeout=120, check=True)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert lines["AT_START"] == "[]"
    assert lines["EMAIL_REGEX"] == "LazyPattern True"  # marshmallow's e-mail regex: not compiled at start-up
    assert lines["FIRST"] == "200 False"  # the first answer did not wait for prometheus_client
    assert lines["AFTER_CLOSE"] == "True"  # built right after it was sent
    counted = json.loads(lines["COUNTED"])
    assert any('route="/predict"' in line and 'status="200"' in line and line.endswith(" 1.0") for line in counted)


def test_the_lazy_email_regexes_still_validate():
    validate = Email()
    assert validate("clinician@example.org") == "clinician@example.org"
    for bad in ("no-at-sign", "two@@example.org", "a@b"):
        try:
            validate(bad)
        except ValidationError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    assert not isinstance(Email.DOMAIN_REGEX, startup.LazyPattern) or Email.DOMAIN_REGEX._compiled is not None


def test_url_builders_are_compiled_at_first_use(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "AUTO_COMPILE": False})
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "predict.predict_named")
    assert isinstance(rule, LazyBuilderRule)
    with app.test_request_context():
        assert url_for("predict.predict_named", name="pneumonia") == "/models/pneumonia/predict"
        assert url_for("predict.predict_named", name="pneumonia", explain="true") == \
            "/models/pneumonia/predict?explain=true"  # the builder that appends unknown arguments
    client = app.test_client()
    assert client.post("/predict", data=image_bytes(), content_type="image/jpeg").status_code == 200
