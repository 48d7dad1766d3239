"""Request bodies: the size limit on every one, and JSON bodies a route parses itself.

`BodyLimit` bounds every request body before any handler runs; the device
hot path, which runs before it, reads through the same `read_body`. A route
that parses its body by hand (for speed) gives up FastAPI's parsing, its
400/422 answers and the body's schema in /openapi.json; `parse_json_body`
and `add_body_models` put all three back.
"""

from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._error_responses import error_json
from ._errors import ApiError

Model = TypeVar("Model", bound=BaseModel)


def parse_json_body(model: type[Model], raw: bytes) -> Model:
    """pydantic parses the bytes itself (faster than json.loads, then validate).

    Raises:
        RequestValidationError: answered as 400 for malformed JSON and 422
            naming the field otherwise, like bodies FastAPI parses.
    """
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise request_validation_error(exc, "body") from None


def request_validation_error(exc: ValidationError, *where: str) -> RequestValidationError:
    """pydantic's errors as FastAPI reports a request's, each located under
    `where` (("body",) or ("query", "wait")), so the 422 names the field."""
    return RequestValidationError(
        [{**problem, "loc": (*where, *problem["loc"])} for problem in exc.errors(include_url=False)]
    )


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses `model` itself (see add_body_models)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_body_models(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Put `models` (and the models they use) in the app's OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components.setdefault(model.__name__, schema)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class BodyTooLargeError(ApiError):
    status = 413
    code = "too_large"


def _declared_length_refused(scope: Scope, limit: int) -> bool:
    """A Content-Length over `limit` (or not a number) is refused unread."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return not value.isdigit() or int(value) > limit
    return False


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes.

    Checks Content-Length up front and also counts streamed bytes, so a
    chunked body cannot slip past the limit. A client that disconnects
    midway leaves what arrived; the parser refuses it.

    Raises:
        BodyTooLargeError: the body is, or says it is, over `limit`.
    """
    if _declared_length_refused(scope, limit):
        raise BodyTooLargeError(f"request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, before any handler.

    `large_paths` maps a path (and everything below it) to a larger limit;
    those bodies are not buffered here but passed through, still counted,
    for the handler to stream to disk (release uploads).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, large_paths: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.large_paths = dict(large_paths or {})

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.large_paths.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        if limit > self.max_bytes and not _declared_length_refused(scope, limit):
            await self.app(scope, self._counted(receive, limit), send)
            return
        try:
            body = await read_body(scope, receive, limit)
        except BodyTooLargeError as exc:
            await error_json(413, exc.code, exc.message)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _counted(receive: Receive, limit: int) -> Receive:
        size = 0

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    # Raised inside the handler's read; answered as a 413.
                    raise BodyTooLargeError(f"request body is over {limit} bytes")
            return message

        return counted
