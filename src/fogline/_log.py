"""Structured logs on stderr: JSON lines for machines, one readable line for people.

Call sites name an event and attach fields: `log.info("device.enrolled",
extra={"fields": {...}})` through `event()`. Field names that look like
secrets are redacted here, once, so no call site can leak a token by mistake.

The format is `human` (local ISO time, level, logger, event, key=value
fields) when stderr is a terminal, `json` (one object per line) otherwise;
`--log-format` or `FOGLINE_LOG_FORMAT` chooses explicitly.
"""

import datetime as dt
import enum
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, Final

import orjson

from ._text import visible

_SECRET_HINTS: Final = ("token", "secret", "password", "private", "claim", "authorization")
LOG_FORMAT_ENV: Final = "FOGLINE_LOG_FORMAT"


class LogFormat(enum.StrEnum):
    human = "human"
    json = "json"


def _redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: "[redacted]" if any(hint in key.lower() for hint in _SECRET_HINTS) else value
        for key, value in fields.items()
    }


def _error_text(record: logging.LogRecord) -> str | None:
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        return f"{type(exc).__name__}: {exc}"
    return None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, event, fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            payload.update(_redact(fields))
        error = _error_text(record)
        if error is not None:
            payload["error"] = error
        return orjson.dumps(payload, default=str).decode()


_COLOURS: Final = {"WARNING": "\x1b[33m", "ERROR": "\x1b[31m", "CRITICAL": "\x1b[1;31m"}
_RESET: Final = "\x1b[0m"


def _value_text(value: Any) -> str:
    """A field value for a key=value line: bare when that reads unambiguously."""
    if not isinstance(value, str):  # numbers, booleans, null, lists, mappings: as JSON
        return visible(orjson.dumps(value, default=str).decode())
    text = visible(value)
    if text and not any(c in text for c in ' ="'):
        return text
    return '"' + text.replace('"', '\\"') + '"'


class HumanFormatter(logging.Formatter):
    """`2026-11-24T21:30:00.123+01:00 INFO  fogline.hub  hub.starting  port=8443`.

    Local time, so it matches the clock on the wall of whoever reads it;
    text someone else chose (module output, device names) has its control
    characters escaped, since it lands on a terminal.
    """

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self._colour = colour

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).astimezone()
        level = f"{record.levelname:<5}"
        if self._colour and record.levelname in _COLOURS:
            level = f"{_COLOURS[record.levelname]}{level}{_RESET}"
        line = (
            f"{when.isoformat(timespec='milliseconds')} {level} {record.name}  "
            f"{visible(record.getMessage().rstrip())}"
        )
        fields = getattr(record, "fields", None)
        pairs = _redact(fields) if isinstance(fields, Mapping) else {}
        error = _error_text(record)
        if error is not None:
            pairs["error"] = error
        if pairs:
            line += "  " + " ".join(f"{visible(str(k))}={_value_text(v)}" for k, v in pairs.items())
        return line


def resolve_log_format(chosen: str | None, stream: IO[str]) -> LogFormat:
    """The format to use: `chosen`, else FOGLINE_LOG_FORMAT, else human on a terminal.

    An unknown name in the environment is ignored (the CLI refuses it as a
    usage error before it gets here).
    """
    for candidate in (chosen, os.environ.get(LOG_FORMAT_ENV)):
        if candidate in (LogFormat.human, LogFormat.json):
            return LogFormat(candidate)
    return LogFormat.human if _is_terminal(stream) else LogFormat.json


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Send every log record to stderr, formatted as `resolve_log_format` says."""
    handler = logging.StreamHandler(sys.stderr)
    if resolve_log_format(fmt, sys.stderr) is LogFormat.human:
        handler.setFormatter(HumanFormatter(colour=_is_terminal(sys.stderr)))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats what the hub's own request metrics record
    # and would print client addresses in free text; keep errors only.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one structured event."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})
