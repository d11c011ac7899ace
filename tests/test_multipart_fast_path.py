"""The multipart fast path (`views.predict.single_file_part`) takes a form only when werkzeug's parser would
read exactly one `file` part from it, with the same bytes and file name; anything else is left to werkzeug."""

from __future__ import annotations

import io

import pytest
from werkzeug.formparser import FormDataParser

from slimserve.views import predict
from slimserve.views.predict import single_file_part
from tests.conftest import image_bytes

B = b"----slimserveBoundary7MA4YWxk"
JPEG = image_bytes()


def part(name: bytes = b"file", filename: bytes | None = b"x.jpeg", data: bytes = JPEG, extra: bytes = b"",
         disposition: bytes | None = None) -> bytes:
    """One part with CRLF line breaks, as browsers and curl write it."""
    if disposition is None:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
    return (b"--" + B + b"\r\nContent-Disposition: " + disposition + b"\r\n" + extra
            + b"Content-Type: image/jpeg\r\n\r\n" + data + b"\r\n")


def form(*parts: bytes, end: bytes = b"\r\n") -> bytes:
    """Parts, then the closing delimiter."""
    return b"".join(parts) + b"--" + B + b"--" + end


def werkzeug_reads(body: bytes) -> dict[str, list]:
    """What werkzeug's own parser makes of the body: every part by name (files as (bytes, file name))."""
    _, fields, files = FormDataParser().parse(io.BytesIO(body), "multipart/form-data", len(body),
                                              {"boundary": B.decode()})
    found: dict[str, list] = {}
    for key, storage in files.items(multi=True):
        found.setdefault(key, []).append((storage.read(), storage.filename))
        storage.close()
    for key in fields:
        found.setdefault(key, []).extend(fields.getlist(key))
    return found


TAKEN = {
    "curl-like": form(part()),
    "leading-line-break": b"\r\n" + form(part()),
    "no-final-crlf": form(part(), end=b""),
    "empty-file": form(part(data=b"")),
    "data-ending-in-crlf": form(part(data=JPEG + b"\r\n")),
    "data-holding-the-boundary-without-a-line-break": form(part(data=b"x--" + B[:-1] + b"y" + JPEG)),
    "utf8-file-name": form(part(filename="röntgen €.jpeg".encode())),
    "rfc2231-file-name": form(part(disposition=b"form-data; name=file; filename*=UTF-8''r%C3%B6ntgen.jpeg")),
    "empty-file-name": form(part(filename=b"")),
    "more-part-headers": form(part(extra=b"X-Other: 1\r\n")),
    "lower-case-header": form(part().replace(b"Content-Disposition", b"content-disposition")),
}

LEFT_TO_WERKZEUG = {
    "two-files": form(part(), part()),
    "file-and-field": form(part(), part(name=b"note", filename=None, data=b"hi")),
    "text-field-named-file": form(part(filename=None, data=b"hello")),
    "other-name": form(part(name=b"image")),
    "preamble": b"preamble\r\n" + form(part()),
    "two-leading-line-breaks": b"\r\n\r\n" + form(part()),
    "epilogue": form(part(), end=b"\r\nepilogue"),
    "lf-line-breaks": form(part()).replace(b"\r\n", b"\n"),
    "folded-header": form(part(extra=b"X-Folded: a\r\n b\r\n")),
    "two-dispositions": form(part(extra=b'Content-Disposition: form-data; name="other"; filename="y"\r\n')),
    "bare-lf-in-headers": form(part(extra=b"X-A: 1\nX-B: 2\r\n")),
    "attachment-disposition": form(part().replace(b"form-data;", b"attachment;")),
    "data-holding-a-delimiter": form(part(data=JPEG[:100] + b"\r\n--" + B + b"\r\n" + JPEG[100:])),
    "no-closing-delimiter": part(),
    "wrong-boundary": form(part()).replace(B, B[:-1] + b"Q"),
    "latin1-header": form(part(filename="r\xf6ntgen.jpeg".encode("latin-1"))),
    "not-multipart": b"just bytes",
}


@pytest.mark.parametrize("name", TAKEN)
def test_fast_path_reads_what_werkzeug_reads(name):
    body = TAKEN[name]
    found = single_file_part(body, B)
    assert found is not None
    assert werkzeug_reads(body) == {"file": [found]}


@pytest.mark.parametrize("name", LEFT_TO_WERKZEUG)
def test_anything_else_is_left_to_werkzeug(name):
    assert single_file_part(LEFT_TO_WERKZEUG[name], B) is None


def test_an_empty_boundary_is_never_taken():
    assert single_file_part(form(part()), b"") is None


def post(client, body: bytes, boundary: bytes = B, **kwargs):
    """POST a hand-made multipart body to /predict."""
    return client.post("/predict", data=body, content_type=f"multipart/form-data; boundary={boundary.decode()}",
                       **kwargs)


def test_a_form_the_fast_path_leaves_is_still_answered_by_werkzeugs_parser(client):
    plain, preamble = post(client, form(part())), post(client, b"preamble\r\n" + form(part()))
    assert plain.status_code == preamble.status_code == 200
    assert plain.get_json()["probability"] == preamble.get_json()["probability"]
    assert plain.get_json()["filename"] == preamble.get_json()["filename"] == "x.jpeg"


@pytest.mark.parametrize(("body", "code"), [
    (form(part(data=b"")), "empty_file"),
    (form(part(), part()), "too_many_files"),
    (form(part(filename=None, data=b"hello")), "missing_file"),
    (form(part(name=b"image")), "missing_file"),
], ids=["empty", "two-files", "text-field", "other-name"])
def test_refusals_of_small_forms_name_what_is_wrong(client, body, code):
    response = post(client, body)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == code


def test_a_form_past_the_fast_path_size_streams_through_werkzeug_with_the_same_verdict(client, monkeypatch):
    body = form(part(name=b"pad", filename=None, data=b"x" * 2000), part())
    small = post(client, body)
    monkeypatch.setattr(predict, "FAST_FORM_BYTES", 1000)
    large = post(client, body)
    assert small.status_code == large.status_code == 400
    assert small.get_json()["error"]["code"] == large.get_json()["error"]["code"] == "unexpected_field"
