"""Log hygiene: the file name travels in a header (or the multipart part), and the access log omits queries."""

from __future__ import annotations

import runpy

from tests.auth_support import REPO
from tests.conftest import image_bytes


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
