"""Label selectors written on one line, as `kubectl -l` reads them:

    site=berlin,tier in (gold,silver),!retired,env!=lab,gpu

    key=value  key==value     the label is value          (matchLabels)
    key!=value                the label is not value      (NotIn [value])
    key in (a,b)              the label is one of a, b    (In)
    key notin (a,b)           the label is none of a, b   (NotIn)
    key                       the label is set            (Exists)
    !key                      the label is not set        (DoesNotExist)

Requirements are separated by commas outside parentheses and all must hold.
The result is the same `Selector` a Deployment's `spec.selector` compiles to,
so a device listed by `fogline devices ls --selector` is a device a
deployment with that selector reaches.
"""

import re
from typing import Final

from fogline._errors import FoglineError
from fogline.protocol import LABEL_KEY_RE, label_problem

from ._schema import MAX_EXPRESSIONS
from ._selector import Operator, Requirement, Selector

MAX_SELECTOR_CHARS: Final = 4096
_SET_RE: Final = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", re.ASCII)
_EQ_RE: Final = re.compile(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$", re.ASCII)


class SelectorSyntaxError(FoglineError):
    """A selector written on one line does not parse; `reason` says where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses (no nesting: a '(' inside one is an error)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "(":
            if depth:
                raise SelectorSyntaxError(f"nested '(' at character {i + 1}")
            depth = 1
        elif char == ")":
            if not depth:
                raise SelectorSyntaxError(f"')' without '(' at character {i + 1}")
            depth = 0
        elif char == "," and not depth:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorSyntaxError("'(' is never closed")
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _key(key: str) -> str:
    if not LABEL_KEY_RE.match(key):
        raise SelectorSyntaxError(str(label_problem(key, "")))
    return key


def _value(key: str, value: str) -> str:
    problem = label_problem(key, value)
    if problem:
        raise SelectorSyntaxError(problem)
    return value


def _requirement(term: str) -> tuple[str, str] | Requirement:
    """One term: a (key, value) for `key=value`, else a Requirement."""
    if found := _SET_RE.match(term):
        key, word, inside = found.groups()
        values = [v.strip() for v in inside.split(",")]
        if not any(values):
            raise SelectorSyntaxError(f"{term!r}: {word} needs at least one value")
        checked = frozenset(_value(key, v) for v in values)
        operator = Operator.IN if word == "in" else Operator.NOT_IN
        return Requirement(_key(key), operator, checked)
    if found := _EQ_RE.match(term):
        key, sign, value = found.groups()
        _key(key)
        _value(key, value)
        if sign == "!=":
            return Requirement(key, Operator.NOT_IN, frozenset({value}))
        return (key, value)
    if term.startswith("!"):
        return Requirement(_key(term[1:].strip()), Operator.DOES_NOT_EXIST)
    if LABEL_KEY_RE.match(term):
        return Requirement(term, Operator.EXISTS)
    raise SelectorSyntaxError(
        f"{term[:80]!r} is not key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
    )


def parse_selector(text: str) -> Selector:
    """A one-line selector (see the module docstring); "" selects every device.

    Raises:
        SelectorSyntaxError: too long, too many terms, a term that does not
            parse, an invalid key or value, or one key given two values.
    """
    if len(text) > MAX_SELECTOR_CHARS:
        raise SelectorSyntaxError(
            f"is {len(text)} characters long; at most {MAX_SELECTOR_CHARS} are read"
        )
    if not text.strip():
        return Selector()
    terms = _split(text)
    if len(terms) > MAX_EXPRESSIONS:
        raise SelectorSyntaxError(f"has {len(terms)} terms; at most {MAX_EXPRESSIONS} are allowed")
    match_labels: dict[str, str] = {}
    expressions: list[Requirement] = []
    for term in terms:
        if not term:
            raise SelectorSyntaxError("an empty term (two commas, or a comma at an end)")
        parsed = _requirement(term)
        if isinstance(parsed, Requirement):
            expressions.append(parsed)
            continue
        key, value = parsed
        if match_labels.get(key, value) != value:
            raise SelectorSyntaxError(f"{key!r} is given two values ({match_labels[key]}, {value})")
        match_labels[key] = value
    return Selector(match_labels=match_labels, match_expressions=tuple(expressions))
