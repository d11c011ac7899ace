"""Schemathesis hooks: real images for the image media types (SCHEMATHESIS_HOOKS=schemathesis_hooks).

The OpenAPI document can say "a JPEG or PNG image" but not "a decodable chest X-ray of at least 96x96";
left alone the fuzzer sends its 1x1 PNG, which the server rightly refuses (422 image_too_small), and pneumonia
2.0.0 refuses whatever is not a chest X-ray (422 not_a_chest_xray). Spec-valid image bodies are therefore the
repository's sample X-ray, as JPEG and as PNG (tests/data/sample_xray.png: the same image at 320 px, saved by
Pillow). Runs in schemathesis' own venv (stdlib only).
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
schemathesis.openapi.media_type("image/png", st.just((DATA / "sample_xray.png").read_bytes()))
schemathesis.openapi.media_type("image/jpeg", st.just((DATA / "sample_xray.jpeg").read_bytes()))
