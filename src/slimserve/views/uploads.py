"""Reading an uploaded image from a request: a multipart `file` part or a raw image body."""

from __future__ import annotations

from flask import request
from marshmallow import ValidationError

from slimserve.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, safe_name
from slimserve.schemas import UploadSchema

# A raw body is accepted with these types; the bytes still decide whether it really is an image.
RAW_IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/png", "application/octet-stream"}
_upload_schema = UploadSchema()


def read_upload() -> tuple[bytes, str | None]:
    """The uploaded bytes and client file name, from a multipart form or a raw image body."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return _read_multipart()
    if mimetype in RAW_IMAGE_TYPES:
        data = read_body()
        if not data:
            raise BadRequest("the request body is empty", code="empty_file", field="file")
        # The name belongs in a header (or the multipart part): URLs end up in logs. `?filename=` is still read.
        return data, request.headers.get("X-Filename") or request.args.get("filename")
    raise UnsupportedMediaType(
        "send multipart/form-data with a `file` field, or a raw body typed image/jpeg or image/png",
        code="unsupported_media_type",
    )


def read_body() -> bytes:
    """The raw request body, refused with 413 past `request.max_content_length` (also when chunked)."""
    data = request.get_data(cache=False)
    limit = request.max_content_length
    # A chunked body has no Content-Length to check up front; werkzeug stops reading at the limit
    # without complaint, so a body that filled the limit is treated as too large rather than cut short.
    if limit is not None and request.content_length is None and len(data) >= limit:
        raise PayloadTooLarge("the request body is larger than the upload limit", code="payload_too_large")
    return data


def _read_multipart() -> tuple[bytes, str | None]:
    # Every part is validated, files and plain fields alike: nothing sent is silently ignored.
    parts = {key: request.files.getlist(key) for key in request.files}
    for key in request.form:
        parts.setdefault(key, []).extend(request.form.getlist(key))
    try:
        _upload_schema.load(parts)
    except ValidationError as exc:
        raise _upload_error(exc.normalized_messages()) from None
    upload = parts["file"][0]
    if isinstance(upload, str):
        raise BadRequest("`file` must be a file part, not a text field", code="missing_file", field="file")
    data = upload.read()
    if not data:
        raise BadRequest("the uploaded file is empty", code="empty_file", field="file")
    return data, upload.filename


def _upload_error(messages: dict) -> BadRequest:
    if "file" in messages:
        missing = "Missing data for required field." in messages["file"]
        if missing:
            return BadRequest("a multipart field called `file` is required", code="missing_file", field="file")
        return BadRequest("send exactly one file per request", code="too_many_files", field="file")
    field = sorted(messages, key=str)[0]  # a part without a usable name parses to the key None
    return BadRequest("unexpected field; only `file` is accepted", code="unexpected_field", field=safe_name(field))
