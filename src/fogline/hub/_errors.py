"""Errors the hub answers with; each maps to one HTTP status and a JSON body.

FoglineError
  ApiError             base: status, machine-readable code, message, field
    BadRequestError    400/422 the body or query is wrong (names the field)
    UnauthorizedError  401 no or unknown credentials
    ForbiddenError     403 known caller, not allowed (revoked device, bad claim)
    NotFoundError      404
    ConflictError      409 the name or version is taken
    UnavailableError   503 the hub is stopping; try again
"""

from fogline._errors import FoglineError


class ApiError(FoglineError):
    status = 500
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequestError(ApiError):
    status = 422
    code = "invalid"


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class ConflictError(ApiError):
    status = 409
    code = "conflict"


class UnavailableError(ApiError):
    status = 503
    code = "unavailable"
