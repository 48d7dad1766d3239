"""Field checks of manifest documents, shared by the schema's models:
names, labels, name patterns, expiry, release keys, and how an error names
a YAML value. A check raises ValueError, or FieldProblems with the paths
below the value it was given."""

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..protocol import (
    DEVICE_NAME_GLOB_PATTERN,
    LABEL_KEY_RE,
    MAX_LABELS,
    MAX_NAME_PATTERNS,
    hub_label_problem,
    label_problem,
)
from ._expiry import parse_expiry

MAX_ENTRY_NAME_CHARS: Final = 128
_NAME: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENTRY_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_KEY_TEXT: Final = 4096


class FieldProblems(ValueError):
    """Problems below the validated value: (path suffix, reason, point at the key?)."""

    def __init__(self, items: Sequence[tuple[tuple[str | int, ...], str, bool]]) -> None:
        super().__init__("; ".join(reason for _, reason, _ in items))
        self.items = tuple(items)


def check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "must be 1-63 lowercase letters, digits or '-', starting and ending "
            f"with a letter or digit (got {value!r})"
        )
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    return check


def check_label_key(value: str) -> str:
    if not LABEL_KEY_RE.match(value):
        raise ValueError(str(label_problem(value, "")))
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    items: list[tuple[tuple[str | int, ...], str, bool]] = []
    if len(labels) > MAX_LABELS:
        items.append(((), f"must have at most {MAX_LABELS} labels (got {len(labels)})", False))
    for key, value in labels.items():
        problem = label_problem(key, value)
        if problem:
            items.append(((key,), problem, not LABEL_KEY_RE.match(key)))
    if items:
        raise FieldProblems(items)
    return labels


def check_claim_labels(labels: dict[str, str]) -> dict[str, str]:
    """A claim's labels: valid, and none under the hub's prefix."""
    items = [((key,), str(problem), True) for key in labels if (problem := hub_label_problem(key))]
    if items:
        raise FieldProblems(items)
    return labels


_NAME_GLOB: Final = re.compile(DEVICE_NAME_GLOB_PATTERN)


def check_name_patterns(patterns: list[str]) -> list[str]:
    items: list[tuple[tuple[str | int, ...], str, bool]] = []
    if len(patterns) > MAX_NAME_PATTERNS:
        items.append(((), f"at most {MAX_NAME_PATTERNS} patterns (got {len(patterns)})", False))
    for i, pattern in enumerate(patterns):
        if not _NAME_GLOB.match(pattern):
            reason = (
                "a name pattern is 1-63 lowercase letters, digits, '-', and the globs "
                f"'*' and '?' (got {pattern!r})"
            )
            items.append(((i,), reason, False))
    if items:
        raise FieldProblems(items)
    return patterns


def named_entries(kind: str, field: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Check that every entry of a modules/pipelines list has a unique name."""

    def check(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[tuple[tuple[str | int, ...], str, bool]] = []
        first: dict[str, int] = {}
        for i, entry in enumerate(entries):
            name = entry.get("name")
            if "name" not in entry:
                items.append(((i, "name"), "required field is missing", False))
            elif not isinstance(name, str):
                items.append(((i, "name"), f"must be a string (got {describe(name)})", False))
            elif len(name) > MAX_ENTRY_NAME_CHARS or not ENTRY_NAME.match(name):
                reason = (
                    f"must be 1-{MAX_ENTRY_NAME_CHARS} letters, digits, '.', '_' or '-', "
                    f"starting with a letter or digit (got {name!r})"
                )
                items.append(((i, "name"), reason, False))
            elif name in first:
                reason = f"duplicate {kind} name {name!r} (first at {field}[{first[name]}])"
                items.append(((i, "name"), reason, False))
            else:
                first[name] = i
        if items:
            raise FieldProblems(items)
        return entries

    return check


def check_expires(value: str) -> str:
    parse_expiry(value)
    return value


def decode_public_key(text: str) -> bytes:
    """Return the 32 raw bytes of an Ed25519 public key given as PEM or base64.

    Raises:
        ValueError: not an Ed25519 public key; the message says what it is.
    """
    text = text.strip()
    if len(text) > _MAX_KEY_TEXT:
        raise ValueError(f"must be an Ed25519 public key (got {len(text)} characters)")
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode("ascii", "replace"))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("must be a PEM public key; this PEM text does not parse") from None
        if not isinstance(key, Ed25519PublicKey):
            algorithm = type(key).__name__.removesuffix("PublicKey").lstrip("_")
            raise ValueError(f"must be an Ed25519 public key (got {algorithm or 'another'} key)")
        return key.public_bytes_raw()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "must be an Ed25519 public key as PEM or as base64 of its 32 bytes"
        ) from None
    if len(raw) != 32:
        raise ValueError(f"must be base64 of 32 bytes, an Ed25519 public key (got {len(raw)})")
    Ed25519PublicKey.from_public_bytes(raw)  # raises ValueError on a bad length only
    return raw


def check_public_key(value: str) -> str:
    decode_public_key(value)
    return value


def describe(value: object) -> str:
    """Name a YAML value's type for an error message: "the string '5'"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
