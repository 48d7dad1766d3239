"""JSON request bodies a route parses itself: parsing, and their API docs.

A route that reads its body by hand (for speed) gives up FastAPI's parsing,
its 400/422 answers and the body's schema in /openapi.json; these put all
three back.
"""

from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError

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
        problems = [
            {**problem, "loc": ("body", *problem["loc"])}
            for problem in exc.errors(include_url=False)
        ]
        raise RequestValidationError(problems) from None


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
