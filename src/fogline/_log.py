"""Structured logs: one JSON event per line on stderr.

Call sites name an event and attach fields: `log.info("device.enrolled",
extra={"fields": {...}})` through `event()`. Field names that look like
secrets are redacted here, once, so no call site can leak a token by mistake.
"""

import logging
import sys
from collections.abc import Mapping
from typing import Any, Final

import orjson

_SECRET_HINTS: Final = ("token", "secret", "password", "private", "claim", "authorization")


def _redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: "[redacted]" if any(hint in key.lower() for hint in _SECRET_HINTS) else value
        for key, value in fields.items()
    }


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
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            payload["error"] = f"{type(exc).__name__}: {exc}"
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
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
