"""The local HTTP ingest: devices POST a JSON object or an NDJSON batch.

    POST /ingest            {"device": "s1", "value": 21.5}
    POST /ingest            (application/x-ndjson) one object per line

Bounded: at most MAX_BODY_BYTES per request and MAX_RECORDS records.
Answers 202 with the number of records taken and pipelines that got them,
once what they produced for the cloud is on disk; 503 when no pipeline has
an http source (the device should retry).
"""

from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.types import Receive, Scope, Send

from fogline.agent._local import send_json

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_RECORDS: Final = 10_000

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


def parse_records(body: bytes) -> list[dict[str, Any]]:
    """One JSON object, or NDJSON lines of objects.

    Raises:
        ValueError: not JSON, not objects, or too many records (with the line).
    """
    stripped = body.strip()
    if not stripped:
        raise ValueError("empty body")
    if stripped.startswith(b"{") and b"\n" not in stripped:
        value = orjson.loads(stripped)
        return [value] if isinstance(value, dict) else []
    records = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        records.append(value)
        if len(records) > MAX_RECORDS:
            raise ValueError(f"more than {MAX_RECORDS} records in one request")
    return records


def ingest_handler(sink: Sink) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def handle(_scope: Scope, receive: Receive, send: Send) -> None:
        try:
            records = parse_records(await read_body(receive, MAX_BODY_BYTES))
        except BodyTooLarge:
            await send_json(
                send, 413, {"error": "too_large", "message": f"body over {MAX_BODY_BYTES} bytes"}
            )
            return
        except (ValueError, orjson.JSONDecodeError) as exc:
            await send_json(send, 400, {"error": "invalid", "message": str(exc)})
            return
        if not records:
            await send_json(send, 400, {"error": "invalid", "message": "expected a JSON object"})
            return
        pipelines = await sink(records)
        if not pipelines:
            # Nothing took the records: say so, so the device keeps them and retries
            # (also the case for a moment after a restart, before desired state loads).
            await send_json(
                send,
                503,
                {"error": "no_pipeline", "message": "no pipeline with an http source is running"},
            )
            return
        await send_json(send, 202, {"accepted": len(records), "pipelines": pipelines})

    return handle
