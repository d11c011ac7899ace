"""The one place where errors become JSON: `{"error": {"code", "message", "field"?}, "request_id"}`."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from slimserve.errors import ServiceUnavailable, SlimserveError

log = logging.getLogger(__name__)

# Werkzeug's own errors (routing, size limits) keep their status but get our codes and shape.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   extra: dict | None = None) -> ResponseReturnValue:
    """Build the JSON error response every route uses."""
    body: dict = {"code": code, "message": message}
    g.error_code = code  # for the refusal metrics
    if field:
        body["field"] = field
    body.update(extra or {})
    response = jsonify(error=body, request_id=g.get("request_id", ""))
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


def _slimserve_error(exc: SlimserveError) -> ResponseReturnValue:
    if exc.status >= 500 and not isinstance(exc, ServiceUnavailable):
        log.error("internal error: %s", exc.message)
        return error_response(500, "internal_error", "the server could not handle this request")
    response = error_response(exc.status, exc.code, exc.message, exc.field, exc.extra)
    response.headers.update(getattr(exc, "headers", {}))  # e.g. WWW-Authenticate on a 401
    return response


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status >= 500:
        return _unexpected(exc)
    code = HTTP_CODES.get(status, "http_error")
    message = {
        413: "the request body is larger than the upload limit",
        404: "no such route",
        405: "method not allowed on this route",
    }.get(status, exc.name.lower())
    response = error_response(status, code, message)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def _unexpected(exc: Exception) -> ResponseReturnValue:
    # The trace goes to the log only: responses never carry stack traces, paths or input.
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "the server could not handle this request")


def init_app(app: Flask) -> None:
    """Map every exception to the JSON error shape."""
    app.register_error_handler(SlimserveError, _slimserve_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
