"""The two errors of the expression language: compile time and run time.

Both are re-exported by ``fogline.pipeline.expr`` (their public home); they live here so the
operator and library modules can raise them without importing the compiler.
"""

from __future__ import annotations

from typing import Final

from .._errors import PipelineError

# Expressions are bounded to a few thousand characters, but an error message
# goes to logs and CLI output: show a readable prefix, never the whole input.
_SHOWN_CHARS: Final = 120
# A reason may quote record data (``int('...')``): bounded like the text.
_REASON_CHARS: Final = 300


def shown(text: str) -> str:
    """The expression as quoted in messages: shortened, control characters escaped."""
    clipped = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clipped)


def _clip(reason: str) -> str:
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 3] + "..."


class ExpressionError(PipelineError):
    """The text of an expression (or topic template) is wrong: where and why.

    ``column`` is 1-based and counts characters from the start of ``text``
    (a line break counts as one character).
    """

    def __init__(self, text: str, column: int, reason: str) -> None:
        reason = _clip(reason)
        super().__init__(f'column {column}: {reason} in "{shown(text)}"')
        self.text, self.column, self.reason = text, column, reason


class EvaluationError(PipelineError):
    """An expression failed on one record (missing data, wrong type, x / 0).

    Raised per event; the engine counts it and drops that event. ``column``
    points at the operation that failed, when known.
    """

    def __init__(self, text: str, reason: str, column: int | None = None) -> None:
        reason = _clip(reason)
        where = f"column {column}: " if column is not None else ""
        super().__init__(f'{where}{reason} in "{shown(text)}"')
        self.text, self.reason, self.column = text, reason, column
