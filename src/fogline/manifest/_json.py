"""JSON value trees: deep freezing, thawing and the canonical encoding."""

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeAlias

import orjson

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


def _default(obj: Any) -> Any:
    # orjson knows dict, list and tuple; frozen trees hold mappingproxies.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Encode `document` as compact JSON with sorted keys, the form revisions hash.

    Raises:
        TypeError: the document holds something that is not a JSON value.
    """
    try:
        return orjson.dumps(document, default=_default, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"document is not canonical JSON: {exc}") from exc
