"""The JSON error bodies the hub answers with, for FastAPI and the hot path alike.

Every failure a client can see is an `ErrorBody`: a machine-readable code, a
message, and the fields at fault. The FastAPI exception handlers (see
`install_error_handlers`) and the device hot path (`_hot_path.py`) both
answer through `error_response`, so a device gets the same body whichever
way its request went.
"""

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fogline._log import event
from fogline.protocol import ErrorBody, ErrorDetail

from ._errors import ApiError

log = logging.getLogger("fogline.hub")


def error_json(
    status: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    details = []
    for problem in exc.errors():
        if problem.get("type") == "json_invalid":
            return error_json(400, "malformed_json", "request body is not valid JSON")
        details.append(
            ErrorDetail(field=_field_path(problem.get("loc", ())), reason=problem["msg"])
        )
    first = details[0] if details else ErrorDetail(reason="invalid request")
    return error_json(422, "invalid", f"{first.field}: {first.reason}", details)


def _api_error(exc: ApiError) -> JSONResponse:
    details = [ErrorDetail(field=exc.field, reason=exc.message)] if exc.field else []
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
    return error_json(exc.status, exc.code, exc.message, details, headers)


# How long a client waits before it asks a busy database again.
BUSY_RETRY_AFTER_S: Final = 5


def database_busy(exc: Exception) -> bool:
    """The database is busy, not broken, and the same request succeeds later:
    SQLite's answer to a writer that waited out its busy timeout (a
    CPU-starved hub under a burst of enrollments), or every pooled connection
    taken for the pool's whole timeout (10,000 devices waking at once for an
    apply, each asking for its desired state and TUF metadata)."""
    if isinstance(exc, PoolTimeoutError):
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def error_response(exc: Exception, path: str) -> JSONResponse:
    """The answer to a request that raised `exc` while serving `path`.

    A busy database is a 503 with Retry-After. Anything unexpected is logged
    with its type and message (the path says where) and answered as a bare
    500: tracebacks never reach the client.
    """
    if database_busy(exc):
        event(log, "request.database_busy", logging.WARNING, path=path)
        return error_json(
            503,
            "unavailable",
            "the hub's database is busy; try again later",
            headers={"retry-after": str(BUSY_RETRY_AFTER_S)},
        )
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, ApiError):
        return _api_error(exc)
    if isinstance(exc, StarletteHTTPException):
        return error_json(exc.status_code, "http_error", str(exc.detail))
    event(log, "request.failed", logging.ERROR, path=path, error=f"{type(exc).__name__}: {exc}")
    return error_json(500, "internal", "internal error; see the hub log")


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    # OperationalError and the pool's timeout by name: Starlette answers a bare
    # `Exception` from its outermost middleware and raises it again (a
    # traceback in the log), which a busy database is not worth.
    kinds = (
        RequestValidationError,
        ApiError,
        StarletteHTTPException,
        OperationalError,
        PoolTimeoutError,
        Exception,
    )
    for kind in kinds:
        app.add_exception_handler(kind, _handle)
