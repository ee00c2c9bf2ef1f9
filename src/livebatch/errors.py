"""Errors a client may see, rendered by one handler as `{"error": {"code": ..., "message": ...}}`.

    LivebatchError                      500 INTERNAL
    ├── BadRequest                      422 VALIDATION_ERROR
    ├── Unauthorized                    401 UNAUTHORIZED
    ├── Forbidden                       403 FORBIDDEN
    ├── NotFound                        404 NOT_FOUND
    ├── Conflict                        409 CONFLICT
    ├── PayloadTooLarge                 413 PAYLOAD_TOO_LARGE
    ├── TooManyRequests                 429 TOO_MANY_REQUESTS
    └── Unavailable                     503 UNAVAILABLE

Domain errors subclass one of these (`BatchNotFound(NotFound)`) and keep its status; a few narrow the
code (`TOO_MANY_STREAMS`) so that clients can tell limits apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class LivebatchError(Exception):
    status_code: int = 500
    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LivebatchError):
    status_code, code = 422, "VALIDATION_ERROR"


class Unauthorized(LivebatchError):
    status_code, code = 401, "UNAUTHORIZED"


class Forbidden(LivebatchError):
    status_code, code = 403, "FORBIDDEN"


class NotFound(LivebatchError):
    status_code, code = 404, "NOT_FOUND"


class Conflict(LivebatchError):
    status_code, code = 409, "CONFLICT"


class PayloadTooLarge(LivebatchError):
    status_code, code = 413, "PAYLOAD_TOO_LARGE"


class TooManyRequests(LivebatchError):
    status_code, code = 429, "TOO_MANY_REQUESTS"


class Unavailable(LivebatchError):
    """A part livebatch depends on and does not run (the identity provider) cannot be reached."""

    status_code, code = 503, "UNAVAILABLE"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The shape of every error answer, for the OpenAPI schema."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "The body could not be read as JSON: not UTF-8, nested too deeply, or a number too long",
    401: "Missing, malformed, expired or wrongly signed token, or its user no longer exists",
    403: "Not faculty, not the batch's owner, or a cross-site request signed in by cookie",
    404: "No such batch, webhook or delivery (also for an id that is not well-formed)",
    409: "The batch (or the delivery) is not in a state that allows this (code INVALID_STATE), or its budget is "
    "spent (BUDGET_REACHED)",
    413: "The request body is over the size limit",
    422: "The request is not valid: the message names the field and the rule",
    429: "A per-user limit is reached (TOO_MANY_BATCHES, TOO_MANY_STREAMS)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the `ErrorBody` schema."""
    return {status: {"description": ERROR_DESCRIPTIONS[status], "model": ErrorBody} for status in statuses}
