"""HTTP security: headers on every response, HSTS only via a trusted proxy, CORS only for configured origins,
and log hygiene (the file name travels in a header; the access log omits query strings)."""

from __future__ import annotations

import re
import runpy

import pytest

from slimserve import create_app
from slimserve.headers import API_CSP
from tests.auth_support import REPO
from tests.conftest import image_bytes


@pytest.fixture
def make_client(model_path, fake_runtimes):
    """A client factory taking extra settings."""
    def make(**config):
        app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                          "AUTO_COMPILE": False, "AUDIT_SINK": "off", **config})
        return app.test_client()
    return make


@pytest.mark.parametrize("path", ["/", "/health", "/version", "/models", "/nope", "/openapi.json"])
def test_every_response_has_referrer_policy_csp_and_no_framing(make_client, path):
    """Errors included: no referrer, a CSP with frame-ancestors 'none', X-Frame-Options DENY."""
    response = make_client().get(path)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/", "/pages/pneumonia", "/pages/pneumonia/try", "/docs"])
def test_pages_run_no_inline_code_and_the_csp_allows_only_this_origin(make_client, path):
    """Scripts and styles are files of this origin; the CSP forbids anything inline."""
    response = make_client().get(path)
    csp = response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html)  # every script has a src
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html


def test_json_answers_get_the_strict_api_csp(make_client):
    """A JSON response loads nothing."""
    assert make_client().get("/health").headers["Content-Security-Policy"] == API_CSP


def test_hsts_only_when_a_trusted_proxy_says_https(make_client):
    """X-Forwarded-Proto is believed only with SLIMSERVE_TRUSTED_PROXIES."""
    https = {"X-Forwarded-Proto": "https"}
    assert "Strict-Transport-Security" not in make_client().get("/health", headers=https).headers
    trusted = make_client(TRUSTED_PROXIES=1)
    assert trusted.get("/health", headers=https).headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in trusted.get("/health").headers


def test_cors_is_off_unless_configured(make_client):
    """No Access-Control-Allow-Origin for anyone by default."""
    response = make_client().get("/version", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_the_configured_origin_and_preflight_is_not_refused(make_client):
    """A configured origin gets CORS headers (preflight included, even on guarded routes); others do not."""
    client = make_client(CORS_ORIGINS="https://ehr.hospital.example", MODEL_ACCESS="*=key")  # /predict guarded
    ok = client.options("/predict", headers={"Origin": "https://ehr.hospital.example",
                                             "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ehr.hospital.example"
    assert "X-API-Key" in ok.headers["Access-Control-Allow-Headers"]
    assert client.post("/predict", headers={"Origin": "https://ehr.hospital.example"}).status_code == 401
    other = client.get("/version", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_raw_body_file_name_comes_from_x_filename(client):
    """X-Filename names a raw upload, so clients need not put the name in the URL."""
    response = client.post("/predict", data=image_bytes(), content_type="image/jpeg",
                           headers={"X-Filename": "scan.jpeg"})
    assert response.get_json()["filename"] == "scan.jpeg"


def test_query_file_name_still_works_for_old_clients(client):
    """?filename= is still read (it is never logged: see the access log format)."""
    response = client.post("/predict?filename=old.jpeg", data=image_bytes(), content_type="image/jpeg")
    assert response.get_json()["filename"] == "old.jpeg"


def test_access_log_format_has_the_path_without_query_and_the_request_id():
    """gunicorn logs %(U)s (path only), never %(r)s (request line) or %(q)s (query), nor referer/agent."""
    fmt = runpy.run_path(str(REPO / "scripts" / "deploy" / "gunicorn.conf.py"))["access_log_format"]
    assert "%(m)s %(U)s" in fmt and "%({x-request-id}o)s" in fmt and "%(s)s" in fmt and "%(B)s" in fmt
    assert not any(part in fmt for part in ("%(r)s", "%(q)s", "%(f)s", "%(a)s"))


def test_the_worker_loop_sends_the_same_csp_as_the_app():
    """The event loop's own answers carry the app's API CSP (one policy, two writers)."""
    from slimserve.wire import LOOP_CSP

    assert LOOP_CSP == API_CSP
