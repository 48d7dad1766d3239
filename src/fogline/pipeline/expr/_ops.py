"""Run-time operators of the expression language, with their bounds.

Each operator checks its operand types itself instead of leaning on Python's
duck typing: ``[0] * 10**9`` or ``'%s' % x`` are valid Python but must not be
valid here. Operators raise ``Fault`` (a reason, no position); the compiled
node that called them turns it into an ``EvaluationError`` with the column.

Bounds (a CPU or memory bomb is a compile error when its operands are
literals, and an ``EvaluationError`` on the one record that triggers it):

* an integer result has at most ``MAX_INT_BITS`` bits (``9**9**9``);
* a string result has at most ``MAX_STR_CHARS`` characters (``'a' * 10**9``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

MAX_INT_BITS: Final = 4096
MAX_STR_CHARS: Final = 65_536

# Python errors an operator may raise on bad data; they become EvaluationError.
DATA_ERRORS: Final = (TypeError, ValueError, ArithmeticError, RecursionError)


class Fault(Exception):
    """An operator refused its operands; ``args[0]`` is the reason."""


def type_name(value: object) -> str:
    """The name of a value's type as users see it in messages."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "record"
    return type(value).__name__


def is_number(value: object) -> bool:
    """int, float or bool (Python's numeric tower minus complex)."""
    return isinstance(value, int | float)


def check_int(value: int) -> int:
    """Return ``value`` or refuse it when it is wider than ``MAX_INT_BITS``."""
    if value.bit_length() > MAX_INT_BITS:
        raise Fault(f"integer result wider than {MAX_INT_BITS} bits")
    return value


def _refuse(symbol: str, a: object, b: object) -> Any:
    if a is None or b is None:
        raise Fault(f"'{symbol}' on null (missing field?)")
    raise Fault(f"cannot apply '{symbol}' to {type_name(a)} and {type_name(b)}")


def add(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a + b
    if isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STR_CHARS:
            raise Fault(f"string result longer than {MAX_STR_CHARS} characters")
        return a + b
    return _refuse("+", a, b)


def sub(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a - b
    return _refuse("-", a, b)


def _repeat(text: str, count: int) -> str:
    if len(text) * max(count, 0) > MAX_STR_CHARS:
        raise Fault(f"string result longer than {MAX_STR_CHARS} characters")
    return text * count


def mul(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        # Checked before multiplying: the product of two wide ints is the bomb.
        if isinstance(a, int) and isinstance(b, int):
            if a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
                raise Fault(f"integer result wider than {MAX_INT_BITS} bits")
            return check_int(a * b)
        return a * b
    if isinstance(a, str) and isinstance(b, int):
        return _repeat(a, b)
    if isinstance(a, int) and isinstance(b, str):
        return _repeat(b, a)
    return _refuse("*", a, b)


def truediv(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a / b
    return _refuse("/", a, b)


def floordiv(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a // b
    return _refuse("//", a, b)


def mod(a: Any, b: Any) -> Any:
    # Numbers only: '%' on a string is printf-style formatting.
    if is_number(a) and is_number(b):
        return a % b
    return _refuse("%", a, b)


def power(a: Any, b: Any) -> Any:
    if not (is_number(a) and is_number(b)):
        return _refuse("**", a, b)
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        # |a| ** b has at least (bits(a) - 1) * b bits: refuse before computing.
        if (a.bit_length() - 1) * b >= MAX_INT_BITS:
            raise Fault(f"integer result wider than {MAX_INT_BITS} bits")
        return check_int(a**b)
    result = a**b
    if isinstance(result, complex):  # (-8) ** 0.5
        raise Fault("result is a complex number")
    return result


def negate(a: Any) -> Any:
    if is_number(a):
        return -a
    if a is None:
        raise Fault("'-' on null (missing field?)")
    raise Fault(f"cannot apply '-' to {type_name(a)}")


def plus(a: Any) -> Any:
    if is_number(a):
        return +a
    if a is None:
        raise Fault("'+' on null (missing field?)")
    raise Fault(f"cannot apply '+' to {type_name(a)}")


ARITHMETIC: Final[Mapping[str, Callable[[Any, Any], Any]]] = {
    "+": add,
    "-": sub,
    "*": mul,
    "/": truediv,
    "//": floordiv,
    "%": mod,
    "**": power,
}


def order_fault(symbol: str, a: object, b: object) -> bool:
    """The result of ``a <symbol> b`` after Python refused it with TypeError.

    Null on either side is the SQL-ish "unknown": the comparison is False.
    Anything else (``'abc' < 1``) is an error, not a silent False.
    """
    if a is None or b is None:
        return False
    raise Fault(f"cannot compare {type_name(a)} and {type_name(b)} with '{symbol}'")


def contains(container: object, item: object) -> bool:
    """``item in container`` for a list, string or record; null holds nothing."""
    if container is None:
        return False
    if isinstance(container, str):
        if isinstance(item, str):
            return item in container
        if item is None:
            return False
        raise Fault(f"'in' a string needs a string on the left, got {type_name(item)}")
    if isinstance(container, list | tuple):
        return item in container
    if isinstance(container, Mapping):
        try:
            return item in container
        except TypeError:  # an unhashable item cannot be a key
            return False
    raise Fault(f"'in' needs a list, string or record on the right, got {type_name(container)}")


def lookup(value: object, key: object) -> Any:
    """``value[key]``: a record by str key, a list by int key; missing is null."""
    if isinstance(key, str) and isinstance(value, Mapping):
        return value.get(key)
    if isinstance(key, int) and not isinstance(key, bool) and isinstance(value, list | tuple):
        try:
            return value[key]
        except IndexError:  # out of range, however far
            return None
    if value is None or key is None:
        return None
    if isinstance(value, Mapping | list | tuple):
        raise Fault(f"cannot index {type_name(value)} with {type_name(key)}")
    raise Fault(f"cannot look up {key!r} in {type_name(value)} (only records and lists)")
