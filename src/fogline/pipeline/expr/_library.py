"""The whitelisted functions an expression may call, and nothing else.

Every function is pure (no clock, no randomness, no I/O), so a call whose
arguments are literals is computed once at compile time. ``coalesce`` is not
in the table: it evaluates its arguments lazily, so the compiler builds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._ops import MAX_STR_CHARS, Fault, check_int, is_number, type_name

# round(5, -10**9) would compute 10**(10**9): the digits argument is bounded.
MAX_ROUND_DIGITS: Final = 308


@dataclass(frozen=True, slots=True)
class Function:
    """A library function: its arity and its implementation."""

    name: str
    min_args: int
    max_args: int
    impl: Callable[..., Any]


def _number(name: str, value: object) -> float | int:
    if is_number(value):
        return value  # type: ignore[return-value]
    if value is None:
        raise Fault(f"{name}() got null (missing field?)")
    raise Fault(f"{name}() needs a number, got {type_name(value)}")


def _string(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise Fault(f"{name}() got null (missing field?)")
    raise Fault(f"{name}() needs a string, got {type_name(value)}")


def _abs(x: object) -> Any:
    return abs(x) if isinstance(x, (int, float)) else abs(_number("abs", x))


def _extreme(name: str, pick: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    items: Any = args
    if len(args) == 1:
        if not isinstance(args[0], list | tuple):
            raise Fault(f"{name}() of one argument needs a list, got {type_name(args[0])}")
        items = args[0]
        if not items:
            raise Fault(f"{name}() of an empty list")
    if any(item is None for item in items):
        raise Fault(f"{name}() got null (missing field?)")
    try:
        return pick(items)
    except TypeError:
        kinds = sorted({type_name(item) for item in items})
        raise Fault(f"{name}() cannot compare {' and '.join(kinds)}") from None


def _min(*args: object) -> Any:
    return _extreme("min", min, args)


def _max(*args: object) -> Any:
    return _extreme("max", max, args)


def _round(x: object, digits: object = None) -> Any:
    number = _number("round", x)
    if digits is None:
        return round(number)
    if not isinstance(digits, int) or isinstance(digits, bool):
        raise Fault(f"round() digits must be an int, got {type_name(digits)}")
    if abs(digits) > MAX_ROUND_DIGITS:
        raise Fault(f"round() digits must be within ±{MAX_ROUND_DIGITS}")
    return round(number, digits)


def _floor(x: object) -> int:
    return math.floor(_number("floor", x))


def _ceil(x: object) -> int:
    return math.ceil(_number("ceil", x))


def _sqrt(x: object) -> float:
    return math.sqrt(_number("sqrt", x))


def _log(x: object, base: object = None) -> float:
    if base is None:
        return math.log(_number("log", x))
    return math.log(_number("log", x), _number("log", base))


def _exp(x: object) -> float:
    return math.exp(_number("exp", x))


def _len(x: object) -> int:
    if isinstance(x, str | list | tuple | Mapping):
        return len(x)
    if x is None:
        raise Fault("len() got null (missing field?)")
    raise Fault(f"len() needs a string, list or record, got {type_name(x)}")


def _bounded(result: str) -> str:
    if len(result) > MAX_STR_CHARS:
        raise Fault(f"string result longer than {MAX_STR_CHARS} characters")
    return result


# Unicode case mapping may grow a string: 'ß'.upper() is 'SS', 'İ'.lower() is 'i̇'.
def _lower(s: object) -> str:
    return _bounded(_string("lower", s).lower())


def _upper(s: object) -> str:
    return _bounded(_string("upper", s).upper())


def _startswith(s: object, prefix: object) -> bool:
    return _string("startswith", s).startswith(_string("startswith", prefix))


def _endswith(s: object, suffix: object) -> bool:
    return _string("endswith", s).endswith(_string("endswith", suffix))


def _contains(haystack: object, needle: object) -> bool:
    if haystack is None:
        return False
    if isinstance(haystack, str):
        return _string("contains", needle) in haystack
    if isinstance(haystack, list | tuple):
        return needle in haystack
    raise Fault(f"contains() needs a string or list, got {type_name(haystack)}")


def _int(x: object) -> int:
    if isinstance(x, str | int | float):
        # int(str) is bounded by Python's own digit limit (ValueError).
        return check_int(int(x))
    raise Fault(f"int() needs a number or string, got {type_name(x)}")


def _float(x: object) -> float:
    if isinstance(x, str | int | float):
        return float(x)
    raise Fault(f"float() needs a number or string, got {type_name(x)}")


def _str(x: object) -> str:
    return _bounded(str(x))


def _bool(x: object) -> bool:
    return bool(x)


def _clamp(x: object, lo: object, hi: object) -> Any:
    number, low, high = _number("clamp", x), _number("clamp", lo), _number("clamp", hi)
    if low > high:
        raise Fault(f"clamp() bounds are reversed: {low!r} > {high!r}")
    return min(max(number, low), high)


FUNCTIONS: Final[Mapping[str, Function]] = {
    f.name: f
    for f in (
        Function("abs", 1, 1, _abs),
        Function("min", 1, 64, _min),
        Function("max", 1, 64, _max),
        Function("round", 1, 2, _round),
        Function("floor", 1, 1, _floor),
        Function("ceil", 1, 1, _ceil),
        Function("sqrt", 1, 1, _sqrt),
        Function("log", 1, 2, _log),
        Function("exp", 1, 1, _exp),
        Function("len", 1, 1, _len),
        Function("lower", 1, 1, _lower),
        Function("upper", 1, 1, _upper),
        Function("startswith", 2, 2, _startswith),
        Function("endswith", 2, 2, _endswith),
        Function("contains", 2, 2, _contains),
        Function("int", 1, 1, _int),
        Function("float", 1, 1, _float),
        Function("str", 1, 1, _str),
        Function("bool", 1, 1, _bool),
        Function("clamp", 3, 3, _clamp),
    )
}

# Built by the compiler (lazy arguments); listed so names resolve in one place.
COALESCE: Final = "coalesce"
MAX_COALESCE_ARGS: Final = 64
