"""Errors a client may see, rendered by one handler as `{"error": {"code": ..., "message": ...}}`.

    LivebatchError                      500 INTERNAL
    ├── BadRequest                      422 VALIDATION_ERROR
    ├── Unauthorized                    401 UNAUTHORIZED
    ├── Forbidden                       403 FORBIDDEN
    ├── NotFound                        404 NOT_FOUND
    ├── Conflict                        409 CONFLICT
    ├── PayloadTooLarge                 413 PAYLOAD_TOO_LARGE
    └── TooManyRequests                 429 TOO_MANY_REQUESTS

Domain errors subclass one of these (`BatchNotFound(NotFound)`) and keep its status; a few narrow the
code (`TOO_MANY_STREAMS`) so that clients can tell limits apart.
"""

from __future__ import annotations


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


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
