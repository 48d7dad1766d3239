"""The local HTTP ingest: devices POST a JSON value or an NDJSON batch.

    POST /ingest            {"device": "s1", "value": 21.5}
    POST /ingest            21.5                  (a bare value: the record {"value": 21.5})
    POST /ingest            (application/x-ndjson) one object or bare value per line

As on MQTT, a JSON object is the record and a bare value (number, string,
boolean, null) becomes `value`. A JSON array is refused: it reads like a
batch, and a batch is NDJSON. A bad line of a batch is reported by its
number and the good lines are still taken.

Guarded: a request the IngestGuard refuses (no token, or one no deployment
declares) is a 401 before its body is read, and reaches no pipeline.

Bounded: at most MAX_BODY_BYTES per request and MAX_RECORDS records.
Answers 202 with the number of records taken, the pipelines that got them
and the lines refused, once what they produced for the cloud is on disk;
400 when no line is a record; 503 when no pipeline has an http source (the
device should retry).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from fogline.agent._local import Receive, Scope, Send, send_json
from fogline.protocol import MAX_PAYLOAD_DEPTH, is_nested_deeper

from ._sensors import IngestGuard

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_RECORDS: Final = 10_000
# Refused lines listed in an answer; the rest are counted.
MAX_ERRORS_SHOWN: Final = 100

Sink = Callable[[list[dict[str, Any]]], Awaitable[int]]


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(slots=True)
class Parsed:
    """The records of a body, and the lines that were not records: (line number, reason)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def _record(value: Any) -> dict[str, Any]:
    """A JSON object is the record; a bare value becomes `value` (as on MQTT).

    Raises:
        ValueError: a JSON array.
    """
    if isinstance(value, list):
        raise ValueError("a JSON array is not a record; send a batch as NDJSON, one per line")
    if is_nested_deeper(value, MAX_PAYLOAD_DEPTH - 1):
        # The outbox and the hub take MAX_PAYLOAD_DEPTH; one level is left for
        # what a pipeline wraps around a record. Refused here, it costs its line.
        raise ValueError(f"a record nested deeper than {MAX_PAYLOAD_DEPTH - 1} levels")
    if isinstance(value, dict):
        return value
    return {"value": value}


def parse_records(body: bytes) -> Parsed:
    """One JSON value (an object may span lines), or NDJSON lines of values.

    Raises:
        ValueError: an empty body, a single value that is no record, or more
            than MAX_RECORDS records (nothing is taken then).
    """
    stripped = body.strip()
    if not stripped:
        raise ValueError("empty body")
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass  # not one value: NDJSON
    else:
        return Parsed([_record(whole)])
    parsed = Parsed()
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.records.append(_record(orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            parsed.refused.append((number, f"not JSON ({exc})"))
        except ValueError as exc:
            parsed.refused.append((number, str(exc)))
        if len(parsed.records) > MAX_RECORDS:
            raise ValueError(f"more than {MAX_RECORDS} records in one request")
    return parsed


def _errors(refused: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [{"line": number, "reason": reason} for number, reason in refused[:MAX_ERRORS_SHOWN]]


def ingest_handler(
    sink: Sink, guard: IngestGuard
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        refusal = guard.refusal(scope)
        if refusal is not None:
            guard.refused += 1
            await send_json(
                send,
                401,
                {"error": "unauthorized", "message": refusal},
                [(b"www-authenticate", b'Bearer realm="fogline-ingest"')],
            )
            return
        try:
            parsed = parse_records(await read_body(receive, MAX_BODY_BYTES))
        except BodyTooLarge:
            await send_json(
                send, 413, {"error": "too_large", "message": f"body over {MAX_BODY_BYTES} bytes"}
            )
            return
        except ValueError as exc:
            await send_json(send, 400, {"error": "invalid", "message": str(exc)})
            return
        if not parsed.records:
            first = parsed.refused[0] if parsed.refused else (1, "no record")
            await send_json(
                send,
                400,
                {
                    "error": "invalid",
                    "message": f"no line is a record (line {first[0]}: {first[1]})",
                    "rejected": len(parsed.refused),
                    "errors": _errors(parsed.refused),
                },
            )
            return
        pipelines = await sink(parsed.records)
        if not pipelines:
            # Nothing took the records: say so, so the device keeps them and retries
            # (also the case for a moment after a restart, before desired state loads).
            await send_json(
                send,
                503,
                {"error": "no_pipeline", "message": "no pipeline with an http source is running"},
            )
            return
        answer: dict[str, Any] = {"accepted": len(parsed.records), "pipelines": pipelines}
        if parsed.refused:
            answer |= {"rejected": len(parsed.refused), "errors": _errors(parsed.refused)}
        await send_json(send, 202, answer)

    return handle
