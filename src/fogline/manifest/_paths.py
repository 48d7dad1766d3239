"""Rendering a field path inside a document: `spec.modules[2].name`."""

import json
import re
from collections.abc import Sequence
from typing import Final

# Keys that read unambiguously after a dot; anything else (label keys with
# '/' or '.', empty keys) is written as a quoted index, e.g. matchLabels["a/b"].
_BARE_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_BARE_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def key_segment(key: str, *, first: bool) -> str:
    """Return how mapping key `key` is written in a path."""
    if _BARE_KEY.match(key):
        return key if first else f".{key}"
    return f"[{json.dumps(key, ensure_ascii=False)}]"


def item_segment(name: str) -> str:
    """Return how a list entry known by its `name` is written: `[thermo]`."""
    if _BARE_NAME.match(name):
        return f"[{name}]"
    return f"[{json.dumps(name, ensure_ascii=False)}]"


def render_path(parts: Sequence[str | int]) -> str:
    """Render keys and list indices as `spec.matchExpressions[1].operator`."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(key_segment(part, first=not out))
    return "".join(out)
