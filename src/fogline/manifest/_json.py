"""JSON value trees: deep freezing, thawing and the canonical encoding."""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

from fogline.protocol._canonical import canonical_json as _protocol_canonical_json

JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


def freeze(value: Any) -> JsonValue:
    """Return a read-only deep copy: mappings become mappingproxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value  # type: ignore[no-any-return]


def thaw(value: Any) -> Any:
    """Return a fresh, mutable deep copy made of dicts and lists."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


# The canonical encoding is part of the wire contract, so it lives in protocol.
canonical_json = _protocol_canonical_json
