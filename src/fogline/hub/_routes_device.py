"""The device API: enrollment (claim + CSR) and everything behind mTLS."""

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline._log import event
from fogline.protocol import (
    API_PREFIX,
    MAX_DESIRED_WAIT_S,
    DesiredStateDoc,
    EnrollRequest,
    EnrollResponse,
    Report,
    ReportAck,
)

from ._auth import (
    StateDep,
    check_device,
    client_peer,
    db_session,
    hub_state,
)
from ._bodies import json_body_doc, parse_json_body
from ._desired import recompile_device, release_keys
from ._errors import ApiError
from ._schema import DesiredStateRow
from ._state import HubState
from ._store import enroll_device

log = logging.getLogger("fogline.hub.device")
router = APIRouter(prefix=API_PREFIX, tags=["device"])

SessionDep = Annotated[Session, Depends(db_session)]


@router.post("/enroll", response_model=EnrollResponse)
def enroll(body: EnrollRequest, session: SessionDep, state: StateDep) -> EnrollResponse:
    """Trade a claim token and a CSR for a device certificate."""
    try:
        row, cert_pem = enroll_device(session, state.ca, body)
        recompile_device(session, state.deployments, row)
        session.commit()
    except ApiError as exc:
        state.metrics.enrollments.labels(exc.code).inc()
        event(log, "device.enroll_refused", logging.WARNING, name=body.name, reason=exc.message)
        raise
    state.metrics.enrollments.labels("ok").inc()
    event(log, "device.enrolled", device_id=row.id, name=row.name, claim_id=row.claim_id)
    return EnrollResponse(
        device_id=row.id,
        name=row.name,
        certificate=cert_pem.decode(),
        ca=state.ca.cert_pem.decode(),
        report_interval_s=state.settings.report_interval_s,
        release_keys=release_keys(session),
    )


@router.post(
    "/report",
    response_model=ReportAck,
    openapi_extra=json_body_doc(Report),
)
async def report(request: Request) -> Response:
    """A device's periodic report: facts, labels, the desired revision it applied.

    The hub's hottest route, so it does by hand what FastAPI would do for it:
    the device is authenticated before its body is parsed, pydantic parses the
    JSON bytes itself (no stdlib json pass first), and the ack is returned as
    bytes. The batched writer checks the device row and records the report
    (see _reports.py).
    """
    peer = client_peer(request)
    body = parse_json_body(Report, await request.body())
    state = hub_state(request)
    await state.reports.record(peer.device_id, peer.serial_hex, body)
    ack = ReportAck(report_interval_s=state.settings.report_interval_s)
    return Response(ack.model_dump_json(), media_type="application/json")


def _load_desired(state: HubState, request: Request) -> DesiredStateRow | None:
    """Authenticate the device (each look, so a revoke ends its poll) and read
    its desired state."""
    with state.sessions() as session:
        device = check_device(session, request)
        row = session.get(DesiredStateRow, device.id)
        if row is not None:
            session.expunge(row)
        return row


@router.get("/desired", response_model=DesiredStateDoc, responses={304: {}})
async def desired(
    request: Request,
    state: StateDep,
    wait: Annotated[float, Query(ge=0, le=MAX_DESIRED_WAIT_S)] = 0.0,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The device's desired state; with `wait`, a long-poll until it differs
    from the ETag the device already has."""
    peer = client_peer(request)
    known = (if_none_match or "").strip().strip('"')
    deadline = time.monotonic() + wait
    while True:
        row = await run_in_threadpool(_load_desired, state, request)
        if row is not None and row.revision != known:
            body = DesiredStateDoc(revision=row.revision, document=row.document)
            return JSONResponse(body.model_dump(), headers={"etag": f'"{row.revision}"'})
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.notifier.closing:
            return Response(status_code=304, headers={"etag": f'"{known}"'} if known else None)
        # Sleep until this device's desired state changes (made by this
        # replica: at once; by another: within the watcher's tick) or it is
        # revoked. An idle fleet of long-polls costs the database nothing.
        seen_seq = row.seq if row is not None else -1
        await state.notifier.wait(peer.device_id, seen_seq, remaining)
