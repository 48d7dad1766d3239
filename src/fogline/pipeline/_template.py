"""MQTT topics with fields: templates to publish to, patterns to subscribe with.

A ``Template`` builds the topic of a local action from the event::

    compile_template("actuators/{device}/cmd").render({"device": "pump-7"})
    # -> "actuators/pump-7/cmd"

A ``TopicPattern`` is a pipeline source: the broker filter to subscribe
with, and the fields a received topic carries::

    p = compile_topic_pattern("sensors/{device}/{metric}")
    p.mqtt_filter                           # "sensors/+/+"
    p.match("sensors/pump-7/temp")          # {"device": "pump-7", "metric": "temp"}

Placeholders are only ``{field}`` (``{nested.field}`` in templates); there
is no format spec, conversion, index or attribute, so a template cannot
reach anything but record values. ``{{`` and ``}}`` write literal braces.

A rendered value must fill part of one topic level: it may not be empty nor
contain ``/``, ``+``, ``#`` or NUL. Otherwise a device that controls a field
(``device = "plant/valve"``) could steer the command to another topic.
``compile_template(text, topic=False)`` drops the MQTT rules, for string
values of an action's payload.

Errors: the text of a template or pattern is wrong -> ``ExpressionError``
(column, reason); a record cannot fill a template -> ``EvaluationError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .expr import EvaluationError, ExpressionError

MAX_TOPIC_BYTES: Final = 65_535  # MQTT: a UTF-8 string has a 2-byte length
_SEGMENT: Final = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_FIELD_PATH: Final = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_CAPTURE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORBIDDEN_IN_VALUE: Final = ("/", "+", "#", "\x00")


def _check_text(text: object, what: str, *, topic: bool) -> str:
    if not isinstance(text, str):
        raise ExpressionError(str(text), 1, f"a {what} must be a string, not {type(text)}")
    if topic:
        if not text:
            raise ExpressionError(text, 1, f"empty {what}")
        if "\x00" in text:
            raise ExpressionError(text, text.index("\x00") + 1, "character '\\x00' is not allowed")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate: not UTF-8, not MQTT
            raise ExpressionError(text, exc.start + 1, "text is not valid UTF-8") from None
    else:
        size = len(text)
    if size > MAX_TOPIC_BYTES:
        unit = "bytes" if topic else "characters"
        raise ExpressionError(text, 1, f"{what} longer than {MAX_TOPIC_BYTES} {unit}")
    return text


def _placeholder_problem(inner: str) -> str:
    for char, what in ((":", "format specs"), ("!", "conversions"), ("[", "indexes")):
        if char in inner:
            return f"{what} are not supported in placeholders"
    return f"placeholder {{{inner}}} must be {{field}} or {{nested.field}}"


# -- templates ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    path: tuple[str, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled topic template; ``render(record)`` fills in its fields."""

    text: str
    fields: frozenset[str]  # top-level field names
    is_topic: bool = True  # values must fill part of one topic level
    _parts: tuple[str | _Slot, ...] = field(default=(), repr=False, compare=False)

    def render(self, record: Mapping[str, Any]) -> str:
        """Fill the placeholders from ``record``.

        Raises:
            EvaluationError: a field is missing or null, not a scalar, or (for
                a topic) its value would change the topic's levels
                (empty, ``/``, ``+``, ``#``) or the topic gets too long.
        """
        pieces: list[str] = []
        for part in self._parts:
            pieces.append(part if isinstance(part, str) else self._value(record, part))
        text = "".join(pieces)
        if self.is_topic:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise EvaluationError(self.text, "topic is not valid UTF-8") from None
        else:
            size = len(text)
        if size > MAX_TOPIC_BYTES:
            unit = "bytes" if self.is_topic else "characters"
            raise EvaluationError(self.text, f"result longer than {MAX_TOPIC_BYTES} {unit}")
        return text

    def _value(self, record: Mapping[str, Any], slot: _Slot) -> str:
        value: Any = record
        for key in slot.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        name = ".".join(slot.path)
        if value is None:
            raise EvaluationError(self.text, f"field {name!r} is missing", slot.column)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            try:
                text = str(value)
            except ValueError:  # an int past Python's digit limit
                reason = f"field {name!r} is too large to write out"
                raise EvaluationError(self.text, reason, slot.column) from None
        else:
            reason = f"field {name!r} is a {type(value).__name__}, not a string or number"
            raise EvaluationError(self.text, reason, slot.column)
        if self.is_topic and (not text or any(char in text for char in _FORBIDDEN_IN_VALUE)):
            reason = f"field {name!r} = {text!r} would change the topic's levels"
            raise EvaluationError(self.text, reason, slot.column)
        return text


def compile_template(text: str, *, topic: bool = True) -> Template:
    """Compile a topic template such as ``actuators/{device}/cmd``.

    With ``topic=False`` the template is a plain string (an action's payload
    value): no MQTT rules for its text or the values filled in.

    Raises:
        ExpressionError: empty or too long, a malformed placeholder, an
            unpaired brace, or (for a topic) a wildcard ``+``/``#`` in the text.
    """
    text = _check_text(text, "topic template" if topic else "template", topic=topic)
    parts: list[str | _Slot] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in "{}" and text[index + 1 : index + 2] == char:
            literal.append(char)
            index += 2
            continue
        if char == "}":
            raise ExpressionError(text, index + 1, "single '}' must be written '}}'")
        if topic and char in "+#":
            raise ExpressionError(text, index + 1, f"wildcard {char!r} cannot be published to")
        if char != "{":
            literal.append(char)
            index += 1
            continue
        end = text.find("}", index)
        if end < 0:
            raise ExpressionError(text, index + 1, "'{' is never closed (write '{{' for a brace)")
        inner = text[index + 1 : end]
        if not _FIELD_PATH.fullmatch(inner):
            raise ExpressionError(text, index + 1, _placeholder_problem(inner))
        path = tuple(inner.split("."))
        if any(key.startswith("__") for key in path):
            raise ExpressionError(text, index + 1, f"name {inner!r} is not allowed")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_Slot(path, index + 1))
        index = end + 1
    if literal:
        parts.append("".join(literal))
    fields = frozenset(part.path[0] for part in parts if isinstance(part, _Slot))
    return Template(text=text, fields=fields, is_topic=topic, _parts=tuple(parts))


# -- topic patterns ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A source topic pattern: the MQTT filter, and the fields a topic carries."""

    pattern: str
    mqtt_filter: str
    fields: tuple[str, ...]  # placeholder names, in level order
    _regex: re.Pattern[str] = field(repr=False, compare=False)
    _wildcard_first: bool = field(repr=False, compare=False)

    def match(self, topic: str) -> dict[str, str] | None:
        """The fields of ``topic`` when it matches the pattern, else None.

        Follows MQTT matching: ``+`` and placeholders fill exactly one level
        (possibly empty), a final ``#`` matches its parent and any levels
        below, and a wildcard first level never matches a ``$SYS``-style topic.
        """
        if not topic or (self._wildcard_first and topic.startswith("$")):
            return None
        found = self._regex.fullmatch(topic)
        if found is None:
            return None
        return dict(zip(self.fields, found.groups(), strict=True))


def compile_topic_pattern(pattern: str) -> TopicPattern:
    """Compile a source pattern such as ``sensors/{device}/{metric}``.

    Raises:
        ExpressionError: empty or too long, a misplaced ``+``/``#``, a
            placeholder that is not a whole level, or a repeated name.
    """
    pattern = _check_text(pattern, "topic pattern", topic=True)
    levels = pattern.split("/")
    filter_levels: list[str] = []
    regex: list[str] = []
    names: list[str] = []
    column = 1
    for position, level in enumerate(levels):
        is_last = position == len(levels) - 1
        if level == "#":
            if not is_last:
                raise ExpressionError(pattern, column, "'#' must be the last level")
            filter_levels.append("#")
            # '#' also matches the parent level itself: `a/#` matches `a`.
            regex[-1:] = [regex[-1] + "(?:/.*)?"] if regex else [".*"]
        elif level == "+":
            filter_levels.append("+")
            regex.append("[^/]*")
        elif level.startswith("{") and level.endswith("}") and len(level) >= 2:
            name = level[1:-1]
            if not _CAPTURE_NAME.fullmatch(name):
                raise ExpressionError(pattern, column, _placeholder_problem(name))
            if name.startswith("__"):
                raise ExpressionError(pattern, column, f"name {name!r} is not allowed")
            if name in names:
                raise ExpressionError(pattern, column, f"field {name!r} appears twice")
            names.append(name)
            filter_levels.append("+")
            regex.append("([^/]*)")
        else:
            _check_literal_level(pattern, level, column)
            filter_levels.append(level)
            regex.append(re.escape(level))
        column += len(level) + 1
    first = levels[0]
    return TopicPattern(
        pattern=pattern,
        mqtt_filter="/".join(filter_levels),
        fields=tuple(names),
        _regex=re.compile("/".join(regex), re.DOTALL),
        _wildcard_first=first in ("+", "#") or first.startswith("{"),
    )


def _check_literal_level(pattern: str, level: str, column: int) -> None:
    for offset, char in enumerate(level):
        if char in "+#":
            reason = f"{char!r} must fill a whole level"
        elif char in "{}":
            reason = "a placeholder must fill a whole level"
        else:
            continue
        raise ExpressionError(pattern, column + offset, reason)
