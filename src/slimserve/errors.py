"""One error hierarchy: every error the service raises carries its HTTP status and a stable code.

The mapping to JSON lives in `slimserve.views.errors`; nothing else formats errors.
"""

from __future__ import annotations


def safe_name(name: object) -> str:
    """A client-chosen key (field or column name) made printable and short enough to name in an error."""
    return "".join(ch for ch in str(name) if ch.isprintable())[:64]


class SlimserveError(Exception):
    """Base class: a client-safe message, a machine-readable code and an HTTP status."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra: dict = {}  # further client-safe keys for the error body (e.g. row, details)
        if code is not None:
            self.code = code


class BadRequest(SlimserveError):
    """The request is malformed (missing or empty file, unexpected field)."""

    status = 400
    code = "bad_request"


class Unauthorized(SlimserveError):
    """Credentials are missing, invalid or too weak for the model; `challenge` is the WWW-Authenticate value."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, challenge: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(SlimserveError):
    """The credentials are valid but not allowed to use this model."""

    status = 403
    code = "forbidden"


class NotFound(SlimserveError):
    """The named model or route does not exist."""

    status = 404
    code = "not_found"


class PayloadTooLarge(SlimserveError):
    """The body or the decoded image is larger than the configured limits."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(SlimserveError):
    """The bytes are not of a type the model accepts."""

    status = 415
    code = "unsupported_media_type"


class UnprocessableEntity(SlimserveError):
    """The input has the right type but cannot be used (corrupt, truncated, too small)."""

    status = 422
    code = "unprocessable_entity"


class TooManyRequests(SlimserveError):
    """This client is over one of its rate limits; `Retry-After` says when that limit's window resets."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(SlimserveError):
    """The model is still loading or failed to load, or the image decoder is busy: retry later."""

    status = 503
    code = "service_unavailable"


class ModelConfigError(SlimserveError):
    """A model artifact is missing, stale or inconsistent; raised at start-up, never to a client."""

    status = 500
    code = "model_config_error"
