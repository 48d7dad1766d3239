"""The canonical JSON of a desired-state document and its revision (a content hash).

Part of the wire contract: the hub names a document by this revision (its
ETag), and the node checks the document it received, or read back from its
disk, against it.
"""

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson


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


def revision_of(document: Mapping[str, Any]) -> str:
    """Return "sha256:<hex>" of the canonical JSON of `document`."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
