"""Wire models shared by hub and agent. No I/O here."""

from ._labels import (
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    MAX_LABELS,
    PLATFORM_LABEL_PREFIX,
    format_labels,
    label_problem,
    parse_labels,
    validate_labels,
)

__all__ = [
    "LABEL_KEY_RE",
    "LABEL_VALUE_RE",
    "MAX_LABELS",
    "PLATFORM_LABEL_PREFIX",
    "format_labels",
    "label_problem",
    "parse_labels",
    "validate_labels",
]
