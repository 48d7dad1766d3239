"""Device labels: the key/value pairs selectors match on.

Keys and values follow Kubernetes' shape so that selectors read the same:
keys may carry a prefix (`fogline.dev/arch`), values are short tokens.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Final

LABEL_KEY_RE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE: Final = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
MAX_LABELS: Final = 64

# Keys under this prefix are the hub's alone (`fogline.dev/os`, `fogline.dev/arch`):
# claims, operators and devices may not set them, so a selector on them means
# what the hub derived.
PLATFORM_LABEL_PREFIX: Final = "fogline.dev/"


def hub_label_problem(key: str) -> str | None:
    """Why `key` may not be given by a claim, an operator or a device, or None."""
    if key.startswith(PLATFORM_LABEL_PREFIX):
        return f"label key {key!r}: keys under {PLATFORM_LABEL_PREFIX} belong to the hub"
    return None


def label_problem(key: str, value: str) -> str | None:
    """Return why a label is invalid, or None when it is fine."""
    if not LABEL_KEY_RE.match(key):
        return f"label key {key!r} must be 1-63 characters of letters, digits, '.', '_', '-', '/'"
    if not LABEL_VALUE_RE.match(value):
        return (
            f"label value {value!r} for {key!r} must be at most 63 characters of letters, "
            "digits, '.', '_', '-', starting and ending with a letter or digit"
        )
    return None


def parse_labels(text: str) -> dict[str, str]:
    """Parse `k=v,k2=v2` (as typed on a command line) into a dict.

    Every caller gives labels for a claim, a device or a simulated node, so
    keys under the hub's prefix are refused here too.

    Raises:
        ValueError: an item without '=', an invalid key or value, or a key
            under the hub's prefix.
    """
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label {item!r} must look like key=value")
        problem = label_problem(key.strip(), value.strip()) or hub_label_problem(key.strip())
        if problem:
            raise ValueError(problem)
        labels[key.strip()] = value.strip()
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    return labels


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Return `labels` as a plain dict, or raise ValueError naming the bad one."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        problem = label_problem(key, value)
        if problem:
            raise ValueError(problem)
    return dict(labels)


def validate_user_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """`validate_labels`, and no key under the hub's prefix (labels from a
    claim, an operator or a device)."""
    checked = validate_labels(labels)
    for key in checked:
        problem = hub_label_problem(key)
        if problem:
            raise ValueError(problem)
    return checked


def format_labels(labels: Iterable[tuple[str, str]]) -> str:
    """Render labels as `k=v,k2=v2` sorted by key, for tables and logs."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels))
