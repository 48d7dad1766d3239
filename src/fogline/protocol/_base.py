"""The three kinds of wire model, one per compatibility policy (see
docs/architecture.md, "Compatibility").

    WireModel      what an operator sends: an unknown field is refused (a typo,
                   or a feature this hub lacks, must not be silently dropped)
    TolerantModel  what the other daemon sends or shows: an unknown field is
                   ignored (a newer peer added it), a missing one defaults (an
                   older peer did not have it); known fields keep their types
                   and bounds, so nonsense is still a 422 naming the field
    AsSentModel    a TolerantModel whose dump holds exactly the fields it was
                   given: the desired document, whose revision hashes what the
                   hub wrote, so a document read and written again (by any
                   version) keeps its revision, and a field added later
                   (`version`) is not written until someone sets it
"""

import enum
from typing import Any, Final, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# The text of an enum value this reader does not know (a newer peer's).
MAX_ENUM_TEXT: Final = 64
E = TypeVar("E", bound=enum.StrEnum)


class WireModel(BaseModel):
    """Strict base: unknown fields are refused, nothing is coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TolerantModel(BaseModel):
    """Tolerant reader: unknown fields are dropped, missing ones default.

    Dropped, not kept: what this version does not understand is never stored
    or passed on, and the body size cap bounds what it costs to skip.
    """

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        strict=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class AsSentModel(TolerantModel):
    """A tolerant model that dumps only the fields it was given (and, with
    `extra="allow"`, the unknown ones it kept)."""

    # No return annotation on purpose: pydantic then documents the model's own
    # fields in the JSON schema (an annotation would replace them).
    @model_serializer(mode="wrap")
    def _as_sent(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        given = self.model_fields_set
        fields = type(self).model_fields
        keep = {name for name in given if name not in fields}  # kept extras
        for name in given & fields.keys():
            keep.add(name)
            alias = fields[name].serialization_alias or fields[name].alias
            if alias:
                keep.add(alias)
        return {key: value for key, value in data.items() if key in keep}


def open_enum(enum_type: type[E]) -> Any:
    """The validator of an enum field a newer peer may fill with a value this
    version does not know: a known value becomes the member, any other text
    is kept as text (at most MAX_ENUM_TEXT characters) rather than refusing
    the whole message; anything but text is refused, naming the field.
    Readers act on the members they know and document what other text means
    to them. Use as `Annotated[MyEnum | str, open_enum(MyEnum)]`.
    """

    def parse(value: object) -> E | str:
        if isinstance(value, enum_type):
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"must be a string, one of {', '.join(enum_type)} (got {type(value).__name__})"
            )
        if len(value) > MAX_ENUM_TEXT:
            raise ValueError(f"must be at most {MAX_ENUM_TEXT} characters (got {len(value)})")
        try:
            return enum_type(value)
        except ValueError:
            return value  # a newer peer's value

    return PlainValidator(parse, json_schema_input_type=enum_type | str)
