"""The compiled form of an expression: closures, and where each one sits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

from ._errors import EvaluationError
from ._ops import Fault

Record: TypeAlias = Mapping[str, Any]
Fn: TypeAlias = Callable[[Record], Any]


@dataclass(slots=True)
class Node:
    """A compiled sub-expression; literal ones keep their value for folding."""

    fn: Fn
    is_constant: bool = False
    value: Any = None
    field_name: str | None = None  # set for a bare top-level field read


def thaw(value: Any) -> Any:
    """A fresh copy of a literal list (scalars are returned as they are)."""
    if isinstance(value, list):
        return [thaw(item) for item in value]
    return value


def constant(value: Any) -> Node:
    """A node that always returns ``value``."""
    if isinstance(value, list):
        # Built fresh per evaluation: the engine hands results downstream, and
        # a shared list mutated there would silently change the rule.
        return Node(lambda _r: thaw(value), is_constant=True, value=value)
    return Node(lambda _r: value, is_constant=True, value=value)


@dataclass(frozen=True, slots=True)
class Site:
    """Where an operation sits in the text, to turn a failure into an error."""

    text: str
    column: int

    def fail(self, exc: BaseException) -> NoReturn:
        """Raise the EvaluationError for ``exc`` (a Fault or a Python data error)."""
        reason = exc.args[0] if isinstance(exc, Fault) and exc.args else str(exc)
        raise EvaluationError(self.text, str(reason) or type(exc).__name__, self.column) from None
