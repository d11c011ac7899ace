"""Every error class: status, stable code, the one JSON shape, and nothing of the input echoed back."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from werkzeug.test import EnvironBuilder

from slimserve import create_app
from tests.conftest import EndlessBody, image_bytes

SECRET = b"PATIENT-SECRET-12345"


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """Check the status, the error code and the documented shape; return the body."""
    assert response.status_code == status, response.data
    body = response.get_json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    if field is not None:
        assert body["error"]["field"] == field
    assert b"Traceback" not in response.data and SECRET not in response.data
    assert b"/tmp" not in response.data and b"site-packages" not in response.data
    return body


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_missing_file_field_is_400(client):
    assert_error(client.post("/predict", data={}, content_type="multipart/form-data"), 400, "missing_file", "file")


def test_empty_file_is_400(client):
    assert_error(client.post("/predict", data={"file": (io.BytesIO(b""), "empty.jpg")}), 400, "empty_file", "file")


def test_empty_raw_body_is_400(client):
    assert_error(client.post("/predict", data=b"", content_type="image/jpeg"), 400, "empty_file", "file")


def test_text_field_named_file_is_400(client):
    response = client.post("/predict", data={"file": "not a file"}, content_type="multipart/form-data")
    assert_error(response, 400, "missing_file", "file")


def test_form_urlencoded_body_is_415(client):
    assert_error(client.post("/predict", data={"file": "not a file"}), 415, "unsupported_media_type")


def test_two_files_are_refused_not_silently_dropped(client):
    files = [(io.BytesIO(image_bytes()), "a.jpg"), (io.BytesIO(image_bytes()), "b.jpg")]
    assert_error(client.post("/predict", data={"file": files}), 400, "too_many_files", "file")


def test_unexpected_field_is_named_not_dropped(client):
    data = {"file": (io.BytesIO(image_bytes()), "a.jpg"), "comment": SECRET.decode()}
    assert_error(client.post("/predict", data=data), 400, "unexpected_field", "comment")


def test_part_with_an_unparsable_name_is_400_not_500(client):
    # Found by schemathesis: a part named `\` (an unterminated quoted string) parses to the key None.
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="\\"\r\n\r\nnull\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n').encode()
    body += image_bytes() + f"\r\n--{boundary}--\r\n".encode()
    response = client.post("/predict", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert_error(response, 400, "unexpected_field")


def test_non_image_bytes_are_415_whatever_the_name(client):
    data = {"file": (io.BytesIO(SECRET + b" plain text"), "xray.jpeg")}
    assert_error(client.post("/predict", data=data), 415, "unsupported_image_type", "file")


def test_gif_is_415(client):
    assert_error(client.post("/predict", data={"file": (io.BytesIO(image_bytes(fmt="GIF")), "a.gif")}),
                 415, "unsupported_image_type")


def test_json_body_is_415(client):
    assert_error(client.post("/predict", json={"x": SECRET.decode()}), 415, "unsupported_media_type")


def test_body_over_the_byte_limit_is_413(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "MAX_UPLOAD_BYTES": 1000})
    big = image_bytes(size=(400, 400), fmt="PNG", mode="RGB", color=(1, 2, 3)) + SECRET * 100
    response = app.test_client().post("/predict", data={"file": (io.BytesIO(big), "big.png")})
    assert_error(response, 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_413_without_reading_it_all(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "MAX_UPLOAD_BYTES": 1000})

    stream = EndlessBody(b"\xff")
    environ = EnvironBuilder(path="/predict", method="POST", content_type="image/jpeg").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    response = app.response_class.from_app(app.wsgi_app, environ)
    assert_error(response, 413, "payload_too_large")
    assert stream.consumed < 100_000


def test_pixel_bomb_is_413_before_decoding(client):
    data = {"file": (io.BytesIO(png_header_only(60_000, 60_000)), "bomb.png")}
    assert_error(client.post("/predict", data=data), 413, "image_too_large", "file")


def test_image_over_configured_pixel_limit_is_413(model_path, fake_runtimes):
    app = create_app({"MODEL_PATH": str(model_path), "RUNTIMES": fake_runtimes, "LOAD_ASYNC": False,
                      "MAX_IMAGE_PIXELS": 100 * 100})
    response = app.test_client().post("/predict", data={"file": (io.BytesIO(image_bytes((101, 100))), "a.jpg")})
    assert_error(response, 413, "image_too_large")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_422(client, fmt):
    whole = image_bytes(size=(256, 256), fmt=fmt, mode="RGB", color=(10, 200, 30))
    data = {"file": (io.BytesIO(whole[: len(whole) // 2]), "cut.img")}
    assert_error(client.post("/predict", data=data), 422, "corrupt_image", "file")


def test_garbage_after_jpeg_magic_is_422(client):
    data = {"file": (io.BytesIO(b"\xff\xd8\xff" + SECRET * 50), "fake.jpg")}
    assert_error(client.post("/predict", data=data), 422, "corrupt_image", "file")


def test_image_smaller_than_the_model_input_is_422(client):
    data = {"file": (io.BytesIO(image_bytes(size=(20, 40))), "tiny.jpg")}
    assert_error(client.post("/predict", data=data), 422, "image_too_small", "file")


def test_unknown_model_is_404(client):
    assert_error(client.get("/models/nope"), 404, "model_not_found", "name")


def test_unknown_route_is_404(client):
    assert_error(client.get("/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_with_allow_header(client):
    response = client.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_runtime_failure_is_a_clean_500_without_details(client, fake_runtimes):
    def explode(batch):
        raise RuntimeError("/secret/path/model.onnx exploded " + SECRET.decode())

    fake_runtimes["onnx"].made[0].predict = explode
    response = client.post("/predict", data={"file": (io.BytesIO(image_bytes()), "a.jpg")})
    assert_error(response, 500, "internal_error")
    assert b"exploded" not in response.data
