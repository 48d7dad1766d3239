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

# Labels the agent reports about its platform; the hub owns these keys.
PLATFORM_LABEL_PREFIX: Final = "fogline.dev/"


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

    Raises:
        ValueError: an item without '=', or an invalid key or value.
    """
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label {item!r} must look like key=value")
        problem = label_problem(key.strip(), value.strip())
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


def format_labels(labels: Iterable[tuple[str, str]]) -> str:
    """Render labels as `k=v,k2=v2` sorted by key, for tables and logs."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels))
