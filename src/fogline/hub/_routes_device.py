"""The device API: enrollment (claim + CSR) and everything behind mTLS."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.protocol import API_PREFIX, EnrollRequest, EnrollResponse, Report, ReportAck

from ._auth import db_session, hub_state, require_device
from ._errors import ApiError
from ._schema import DeviceRow
from ._state import HubState
from ._store import enroll_device, record_report

log = logging.getLogger("fogline.hub.device")
router = APIRouter(prefix=API_PREFIX, tags=["device"])

SessionDep = Annotated[Session, Depends(db_session)]
StateDep = Annotated[HubState, Depends(hub_state)]
DeviceDep = Annotated[DeviceRow, Depends(require_device)]


@router.post("/enroll", response_model=EnrollResponse)
def enroll(body: EnrollRequest, session: SessionDep, state: StateDep) -> EnrollResponse:
    """Trade a claim token and a CSR for a device certificate."""
    try:
        row, cert_pem = enroll_device(session, state.ca, body)
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
    )


@router.post("/report", response_model=ReportAck)
def report(body: Report, device: DeviceDep, session: SessionDep, state: StateDep) -> ReportAck:
    """A device's periodic report: facts, labels, later versions and health."""
    record_report(device, body)
    session.commit()
    return ReportAck(report_interval_s=state.settings.report_interval_s)
