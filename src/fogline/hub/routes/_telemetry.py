"""Telemetry: devices upload outbox batches; operators query them."""

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline.manifest import parse_duration
from fogline.protocol import (
    API_PREFIX,
    COLUMNS_MEDIA_TYPE,
    BatchFormatError,
    TelemetryAck,
    decode_batch,
    decode_columns,
)

from .._audit_trail import not_audited
from .._auth import SessionEndingRoute, StateDep, check_device, db_session, require_operator
from .._clock import utcnow
from .._devices import find_device
from .._errors import BadRequestError
from .._people import Principal
from .._state import HubState
from .._telemetry import MAX_DECOMPRESSED_BYTES, MAX_QUERY_ROWS, query, store_batch

log = logging.getLogger("fogline.hub.telemetry")
router = APIRouter(prefix=API_PREFIX, tags=["telemetry"], route_class=SessionEndingRoute)

SessionDep = Annotated[Session, Depends(db_session)]
# The batch formats this hub reads, named in every answer to an upload (the
# `Accept-Post` header of RFC 9110's kin): an agent sends format 2 only to a
# hub that named it, so a newer agent never dead-letters records at an older hub.
ACCEPT_POST = f"application/json, {COLUMNS_MEDIA_TYPE}"
OperatorDep = Annotated[Principal, Depends(require_operator)]


def _store(state: HubState, request: Request, body: bytes) -> tuple[int, int]:
    """Returns (records received, records new to the store)."""
    # Format 1 is whatever does not name format 2: agents before it sent
    # `application/json` with `content-encoding: zstd`.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    decode = decode_columns if media_type == COLUMNS_MEDIA_TYPE else decode_batch
    with state.sessions() as session:
        device = check_device(session, request)
        try:
            records = decode(body, max_decompressed=MAX_DECOMPRESSED_BYTES)
        except BatchFormatError as exc:
            raise BadRequestError(str(exc), field=exc.field or "body") from exc
        stored = store_batch(session, device.id, records)
        session.commit()
    return len(records), stored


@router.post(
    "/telemetry",
    response_model=TelemetryAck,
    openapi_extra=not_audited(
        "device data, not a change to the fleet: stored once per (device, stream, seq)"
    ),
)
async def upload(request: Request, response: Response, state: StateDep) -> TelemetryAck:
    """A zstd-compressed batch from a device's outbox, format 1 or 2 by its
    content type (see fogline.protocol)."""
    response.headers["accept-post"] = ACCEPT_POST
    body = await request.body()  # bounded by the BodyLimit middleware
    received, stored = await run_in_threadpool(_store, state, request, body)
    state.metrics.telemetry.inc(received)
    state.metrics.telemetry_duplicates.inc(received - stored)
    return TelemetryAck(received=received)


@router.get("/telemetry")
def telemetry_query(
    _op: OperatorDep,
    session: SessionDep,
    device: Annotated[str | None, Query(max_length=64)] = None,
    stream: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str, Query(max_length=32)] = "1h",
    limit: Annotated[int | None, Query(ge=1, le=MAX_QUERY_ROWS)] = None,
    tail: Annotated[int | None, Query(ge=1, le=MAX_QUERY_ROWS)] = None,
) -> list[dict[str, Any]]:
    """Records by device (id or name) and stream, created within `since` (e.g. 1h),
    oldest first: the first `limit` (default 1000) of the window, or with
    `tail` its newest `tail` records. An unknown device is 404, as for
    `GET /v1/devices/{ref}`."""
    if limit is not None and tail is not None:
        raise BadRequestError("give limit or tail, not both", field="tail")
    try:
        window = dt.timedelta(seconds=parse_duration(since))
    except ValueError as exc:
        raise BadRequestError(str(exc), field="since") from exc
    device_id = find_device(session, device).id if device else None
    return query(
        session,
        device_id=device_id,
        stream=stream,
        since=utcnow() - window,
        limit=tail or limit or 1000,
        newest=tail is not None,
    )
