"""/version names the image it runs in, so a deploy's smoke test (and a person) can tell which build serves."""

from __future__ import annotations

from slimserve import create_app
from slimserve.config import from_env


def test_version_reports_the_image_digest_it_was_started_with(model_path, fake_runtimes):
    digest = "sha256:" + "c" * 64
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "IMAGE_DIGEST": digest})
    assert app.test_client().get("/version").get_json()["image_digest"] == digest


def test_version_says_null_when_the_image_digest_is_unknown(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False})
    body = app.test_client().get("/version").get_json()
    assert "image_digest" in body and body["image_digest"] is None


def test_image_digest_is_read_from_the_environment():
    assert from_env({"IMAGE_DIGEST": "sha256:abc"})["IMAGE_DIGEST"] == "sha256:abc"
