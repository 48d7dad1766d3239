"""What the daemons' exec'd programs share with the commands that start them:
the options as JSON and a usage error worded as Click words it.

`fogline agent run` and `fogline hub serve` parse their options with Typer,
check what the standard library can, then replace themselves (exec, same
pid) with a lean program (`_agent_main`, `_hub_main`) that gets the options
as given, in an environment variable, as JSON: never a secret (a secret's
file path, not its content). That program has no Click to word a usage
error: `usage_error` does it.

At module level this imports the standard library and fogline's base only.
"""

import json
import logging
import math
import os
import types
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, Union, get_args, get_origin, get_type_hints

from fogline._log import event
from fogline._reexec import exec_module
from fogline._text import visible

T = TypeVar("T")

# The options travel in an environment variable: the hub's are about 1.5 KB
# (many --san could make them more), Linux takes up to 128 KiB per string.
# The exec'd program refuses more; a command whose options are longer runs
# in process instead.
MAX_OPTIONS_CHARS: Final = 64 * 1024


class OptionError(Exception):
    """An option's value is wrong: `hint` names the option."""

    def __init__(self, hint: str, message: str) -> None:
        super().__init__(f"{hint}: {message}")
        self.hint = hint
        self.message = message


def usage_error(command: str, exc: OptionError) -> str:
    """`exc` as Click words a usage error of `command` (e.g. `fogline hub
    serve`; Typer's, without its frame)."""
    return (
        f"Usage: {command} [OPTIONS]\n"
        f"Try '{command} --help' for help.\n\n"
        f"Error: Invalid value for {exc.hint}: {visible(exc.message)}"
    )


def options_to_json(options: object) -> str:
    """A dataclass of options as JSON (paths as text): read back by `options_from_json`."""
    assert is_dataclass(options) and not isinstance(options, type)
    return json.dumps(
        {
            f.name: str(v) if isinstance(v, Path) else v
            for f in fields(options)
            for v in (getattr(options, f.name),)
        }
    )


def exec_with_options(
    module: str, shown: list[str], env: str, options: object, log: logging.Logger
) -> None:
    """Replace this process (exec, same pid) by `python -P -m module shown...`
    with `options` as JSON in the environment variable `env`; returns only if
    that could not be done, logged as `<logger's last name>.exec_skipped`
    (options too large) or `.exec_failed`: the caller then runs in process."""
    program = log.name.rsplit(".", 1)[-1]
    text = options_to_json(options)
    if len(text) > MAX_OPTIONS_CHARS:
        event(log, f"{program}.exec_skipped", logging.WARNING, reason="options too large")
        return
    error = exec_module(module, shown, {env: text})
    event(log, f"{program}.exec_failed", logging.WARNING, error=str(error))


class ExecOptionsError(Exception):
    """The exec'd program's options are missing from its environment or unreadable."""


def options_from_env(cls: type[T], env: str, starter: str) -> T:
    """The options `exec_with_options` left in `env` (removed from the
    environment, so no child inherits them).

    Raises:
        ExecOptionsError: `env` is unset (the message says to start `starter`
            instead) or does not hold `cls`'s options.
    """
    raw = os.environ.pop(env, None)
    if raw is None:
        raise ExecOptionsError(f"no {env}: start {starter}")
    try:
        return options_from_json(cls, raw, max_chars=MAX_OPTIONS_CHARS)
    except (ValueError, TypeError) as exc:
        raise ExecOptionsError(f"{env}: {visible(str(exc))}") from exc


def options_from_json(cls: type[T], text: str, *, max_chars: int) -> T:
    """The dataclass `cls` from what `options_to_json` wrote, each value of
    its field's type (str, int, float, bool, Path, None, list[str]); a
    missing field takes its default.

    Raises:
        ValueError: longer than `max_chars`, not JSON, an unknown or missing
            field, or a value of another type; the message names which.
    """
    if len(text) > max_chars:
        raise ValueError(f"longer than {max_chars} characters")
    raw = json.loads(text)  # JSONDecodeError is a ValueError
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    assert is_dataclass(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown option {visible(unknown[0][:40])!r}")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in known.items():
        if name in raw:
            values[name] = _typed(name, raw[name], hints[name])
        elif field.default is MISSING and field.default_factory is MISSING:
            raise ValueError(f"{name}: missing")
    return cls(**values)


def _typed(name: str, value: object, hint: object) -> object:
    """`value` as `hint` says (a Path from text, a float from an int)."""
    kinds = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    for kind in kinds:
        if kind is type(None) and value is None:
            return None
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue  # JSON's true is not a number
        if kind is int and isinstance(value, int):
            return value
        if kind is float and isinstance(value, int | float) and math.isfinite(value):
            return float(value)
        if kind in (str, Path) and isinstance(value, str) and "\0" not in value:
            return kind(value)
        if (
            get_origin(kind) is list
            and isinstance(value, list)
            and all(isinstance(item, str) and "\0" not in item for item in value)
        ):
            return list(value)
    raise ValueError(f"{name}: expected {_name(hint)}, got {type(value).__name__}")


def _name(hint: object) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)
