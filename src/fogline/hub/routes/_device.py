"""The device API: enrollment (claim + CSR) and everything behind mTLS."""

import datetime as dt
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline._log import event
from fogline.protocol import (
    API_PREFIX,
    MAX_DESIRED_WAIT_S,
    DesiredStateDoc,
    EnrollRequest,
    EnrollResponse,
    RenewRequest,
    RenewResponse,
    Report,
    ReportAck,
)

from .._audit import note_actor, record_audit
from .._audit_trail import audited, not_audited
from .._auth import (
    DevicePeer,
    StateDep,
    client_peer,
    db_session,
    device_actor,
    hub_state,
)
from .._bodies import json_body_doc, parse_json_body
from .._desired import TrustedKey, key_material, key_scopes, recompile_device, release_keys
from .._devices import device_refusal
from .._enrollment import enroll_device
from .._errors import ApiError, ConflictError
from .._renewal import renew_device
from .._schema import DesiredStateRow, DeviceRow
from .._state import HubState
from .._tls import PEER_SCOPE_KEY, PeerCertificate
from .._tuf import trusted_root

log = logging.getLogger("fogline.hub.device")
router = APIRouter(prefix=API_PREFIX, tags=["device"])

SessionDep = Annotated[Session, Depends(db_session)]


# A lost race for a name is settled by looking again; one more look is
# enough unless the winner rolled back, and then the name is free.
_ENROLL_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class _Enrolled:
    row: DeviceRow
    cert_pem: bytes
    keys: dict[str, TrustedKey]  # the release keys the node is to trust
    tuf_root: bytes | None


def _enroll_settled(session: Session, state: HubState, body: EnrollRequest) -> _Enrolled:
    """Enroll and commit. When another enrollment took the name between this
    one's look and its insert (the unique constraint), the transaction is
    rolled back and the enrollment runs again: it then sees the winner, and
    answers 409 (or, for the same key and claim, the retried enrollment).

    What the answer needs from the database is read before the commit, which
    gives the connection back: the session lives until the answer is sent,
    and a connection it still held would wait for a worker thread (FastAPI
    validates the answer on one) while a burst of enrollments waits for
    connections on every worker thread (tests/hub/test_request_connections.py).

    Raises:
        ApiError: see `enroll_device`.
    """
    for _attempt in range(_ENROLL_ATTEMPTS):
        try:
            row, cert_pem = enroll_device(session, state.signing_ca(), body, _validity(state))
            recompile_device(session, state.deployments, row)
            record_audit(
                session,
                device_actor(row.name),
                "device.enroll",
                row.name,
                device_id=row.id,
                claim_id=row.claim_id,
                key_sha256=row.key_sha256,
                labels=row.labels,
            )
            enrolled = _Enrolled(row, cert_pem, release_keys(session), trusted_root(session))
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return enrolled
    raise ConflictError(f"device name {body.name!r} is taken", field="name")


# exclude_unset: release_key_scopes only when some key is scoped, so agents
# that predate scopes (their EnrollResponse forbids unknown fields) still enroll.
@router.post(
    "/enroll",
    response_model=EnrollResponse,
    response_model_exclude_unset=True,
    openapi_extra=audited("device.enroll"),
)
def enroll(body: EnrollRequest, session: SessionDep, state: StateDep) -> EnrollResponse:
    """Trade a claim token and a CSR for a device certificate. Audited, refusals too."""
    note_actor(device_actor(body.name))
    try:
        enrolled = _enroll_settled(session, state, body)
    except ApiError as exc:
        state.metrics.enrollments.labels(exc.code).inc()
        event(log, "device.enroll_refused", logging.WARNING, name=body.name, reason=exc.message)
        raise
    row = enrolled.row
    state.metrics.enrollments.labels("ok").inc()
    event(log, "device.enrolled", device_id=row.id, name=row.name, claim_id=row.claim_id)
    scopes = key_scopes(enrolled.keys)
    optional: dict[str, Any] = {}
    if scopes:
        optional["release_key_scopes"] = scopes
    if enrolled.tuf_root is not None:
        optional["tuf_root"] = enrolled.tuf_root.decode()
    return EnrollResponse(
        device_id=row.id,
        name=row.name,
        certificate=enrolled.cert_pem.decode(),
        ca=state.trust_bundle_pem().decode(),
        report_interval_s=state.settings.report_interval_s,
        release_keys=key_material(enrolled.keys),
        **optional,
    )


def _validity(state: HubState) -> dt.timedelta:
    return dt.timedelta(seconds=state.settings.device_cert_validity_s)


@router.post("/renew", response_model=RenewResponse, openapi_extra=audited("device.renew"))
def renew(
    request: Request,
    # A dependency, so the device is authenticated before its body is read.
    peer: Annotated[DevicePeer, Depends(client_peer)],
    body: RenewRequest,
    session: SessionDep,
    state: StateDep,
) -> RenewResponse:
    """Trade the device's current certificate (mTLS) and a CSR for a new
    certificate and the fleet's trust bundle. Audited, refusals too (the
    audit trail writes those: hub/_audit_trail.py)."""
    tls_peer = request.scope.get(PEER_SCOPE_KEY)
    peer_pem = tls_peer.pem if isinstance(tls_peer, PeerCertificate) else ""
    known = session.get(DeviceRow, peer.device_id)
    note_actor(device_actor(known.name if known is not None else peer.device_id))
    ca = state.signing_ca()
    try:
        row, cert_pem, replayed = renew_device(
            session, ca, peer.device_id, peer.serial_hex, peer_pem, body.csr, _validity(state)
        )
    except ApiError as exc:
        event(
            log,
            "device.renew_refused",
            logging.WARNING,
            device_id=peer.device_id,
            reason=exc.message,
        )
        raise
    record_audit(
        session,
        device_actor(row.name),
        "device.renew",
        row.name,
        device_id=row.id,
        serial=row.cert_serial,
        previous_serial=row.prev_cert_serial,
        ca_key_id=ca.key_id,
        not_after=row.cert_not_after.isoformat(),
        replayed=replayed,
    )
    session.commit()
    event(
        log,
        "device.renewed",
        device_id=row.id,
        name=row.name,
        serial=row.cert_serial,
        replayed=replayed,
    )
    return RenewResponse(certificate=cert_pem.decode(), ca=state.trust_bundle_pem().decode())


@router.post(
    "/report",
    response_model=ReportAck,
    openapi_extra=json_body_doc(Report)
    | not_audited(
        "device data, not a change to the fleet: the report is the device's state, "
        "kept in its row; thousands a second would drown the trail"
    ),
)
async def report(request: Request) -> Response:
    """A device's periodic report: facts, labels, the desired revision it applied.

    A served hub answers this route before FastAPI routes it (hub/_hot_path.py);
    this endpoint documents it and serves apps run without that wrapper.
    Both authenticate the device before reading its body.
    """
    peer = client_peer(request)
    ack = await answer_report(hub_state(request), peer, await request.body())
    return Response(ack, media_type="application/json")


async def answer_report(state: HubState, peer: DevicePeer, raw: bytes) -> bytes:
    """Record a report and return the ack's JSON.

    pydantic parses the JSON bytes itself (no stdlib json pass first), and
    the batched writer checks the device row and records the report (see
    hub/_reports.py).

    Raises:
        RequestValidationError: the body is not a valid report.
        ForbiddenError: unknown or revoked device, or a superseded certificate.
        UnavailableError: the hub is stopping.
    """
    body = parse_json_body(Report, raw)
    await state.reports.record(peer.device_id, peer.serial_hex, body)
    return _report_ack(state.settings.report_interval_s, state.signing_ca().key_id)


@functools.lru_cache(maxsize=8)
def _report_ack(report_interval_s: float, ca_key_id: str | None = None) -> bytes:
    """The ack's JSON: the same for every report, so built once per interval
    and issuing CA."""
    ack = ReportAck(report_interval_s=report_interval_s, ca_key_id=ca_key_id)
    return ack.model_dump_json(exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class _DesiredLook:
    revision: str | None  # None: nothing compiled for the device yet
    seq: int
    document: dict[str, Any] | None  # only when the revision is not the one the device has


def _look_desired(state: HubState, peer: DevicePeer, known: str) -> _DesiredLook:
    """Authenticate the device (each look, so a revoke ends its poll) and read
    its desired state: columns only, and the document only when it changed.

    A fleet re-polls every 30 s: loading the device row and the document each
    time was a quarter of a busy hub's CPU.
    """
    with state.sessions() as session:
        look = session.execute(_LOOK, {"device_id": peer.device_id}).one_or_none()
        refusal = device_refusal(look, peer.serial_hex)
        if refusal is not None:
            raise refusal
        assert look is not None  # device_refusal refuses a missing row
        if look.revision is None:
            return _DesiredLook(None, -1, None)
        if look.revision == known:
            return _DesiredLook(look.revision, look.seq, None)
        # Revision and document again, together: one row, never mixed versions.
        full = session.execute(_LOOK_DOCUMENT, {"device_id": peer.device_id}).one()
        return _DesiredLook(full.revision, full.seq, full.document)


# Built once: constructing a SELECT costs more than SQLite running it.
_LOOK: Final = (
    select(
        DeviceRow.cert_serial,
        DeviceRow.prev_cert_serial,
        DeviceRow.revoked_at,
        DesiredStateRow.revision,
        DesiredStateRow.seq,
    )
    .outerjoin(DesiredStateRow, DesiredStateRow.device_id == DeviceRow.id)
    .where(DeviceRow.id == bindparam("device_id"))
)
_LOOK_DOCUMENT: Final = select(
    DesiredStateRow.revision, DesiredStateRow.seq, DesiredStateRow.document
).where(DesiredStateRow.device_id == bindparam("device_id"))


@dataclass(frozen=True, slots=True)
class WokenDesired:
    """What the watcher read for a woken long-poll (`read_woken_desired`):
    the columns that authenticate the device, and the answer's body."""

    cert_serial: str
    prev_cert_serial: str | None
    revoked_at: dt.datetime | None
    revision: str | None
    body: bytes | None  # None: the poll reads its document itself


_IN_CHUNK: Final = 500  # ids per IN (...): under every backend's parameter limit


def read_woken_desired(state: HubState, device_ids: Sequence[str]) -> dict[str, WokenDesired]:
    """The answers of the woken long-polls of `device_ids`, in a few queries.

    Devices that share a revision share its document (the revision hashes
    it): each document is read and serialized once, and every poll on that
    revision is answered with the same bytes.
    """
    looks: dict[str, Any] = {}
    with state.sessions() as session:
        for start in range(0, len(device_ids), _IN_CHUNK):
            chunk = device_ids[start : start + _IN_CHUNK]
            looks.update(
                (row.id, row) for row in session.execute(_LOOK_MANY.where(DeviceRow.id.in_(chunk)))
            )
        one_each = {row.revision: device_id for device_id, row in looks.items() if row.revision}
        bodies: dict[str, bytes] = {}
        ids = list(one_each.values())
        for start in range(0, len(ids), _IN_CHUNK):
            query = select(DesiredStateRow.revision, DesiredStateRow.document).where(
                DesiredStateRow.device_id.in_(ids[start : start + _IN_CHUNK])
            )
            for revision, document in session.execute(query):
                # Served exactly as stored, as answer_desired does.
                bodies[revision] = orjson.dumps({"revision": revision, "document": document})
    return {
        device_id: WokenDesired(
            cert_serial=row.cert_serial,
            prev_cert_serial=row.prev_cert_serial,
            revoked_at=row.revoked_at,
            revision=row.revision,
            # A revision whose row moved on between the two reads has no
            # body here (PostgreSQL reads each statement afresh).
            body=bodies.get(row.revision) if row.revision else None,
        )
        for device_id, row in looks.items()
    }


_LOOK_MANY: Final = select(
    DeviceRow.id,
    DeviceRow.cert_serial,
    DeviceRow.prev_cert_serial,
    DeviceRow.revoked_at,
    DesiredStateRow.revision,
).outerjoin(DesiredStateRow, DesiredStateRow.device_id == DeviceRow.id)


@dataclass(frozen=True, slots=True)
class DesiredAnswer:
    """A long-poll's answer: 200 with the document, or 304 unchanged."""

    status: int
    etag: str | None  # the revision, quoted
    body: bytes = b""


async def answer_desired(
    state: HubState, peer: DevicePeer, if_none_match: str | None, wait_s: float
) -> DesiredAnswer:
    """The device's desired state; with `wait_s`, a long-poll until it differs
    from the ETag the device already has.

    Raises:
        ForbiddenError: unknown or revoked device (also while it waits), or a
            superseded certificate.
    """
    known = (if_none_match or "").strip().strip('"')
    deadline = time.monotonic() + wait_s
    unchanged = DesiredAnswer(304, f'"{known}"' if known else None)
    while True:
        look = await run_in_threadpool(_look_desired, state, peer, known)
        if look.revision is not None and look.document is not None:
            # Served exactly as stored: the document's revision hashes these
            # fields, and compile_for wrote them through DesiredDocument.
            body = orjson.dumps({"revision": look.revision, "document": look.document})
            return DesiredAnswer(200, f'"{look.revision}"', body)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state.notifier.closing:
            return unchanged
        # Sleep until this device's desired state changes (made by this
        # replica: at once; by another: within the watcher's tick) or it is
        # revoked. An idle fleet of long-polls costs the database one look
        # per poll: a poll that times out unchanged answers without another.
        woken = await state.notifier.wait_for(peer.device_id, look.seq, remaining)
        if not woken.changed:
            return unchanged
        found = woken.payload
        if isinstance(found, WokenDesired):  # read for every woken poll at once
            refusal = device_refusal(found, peer.serial_hex)
            if refusal is not None:
                raise refusal
            if found.body is not None and found.revision != known:
                return DesiredAnswer(200, f'"{found.revision}"', found.body)


@router.get("/desired", response_model=DesiredStateDoc, responses={304: {}})
async def desired(
    request: Request,
    wait: Annotated[float, Query(ge=0, le=MAX_DESIRED_WAIT_S)] = 0.0,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The device's desired state; with `wait`, a long-poll until it differs
    from the ETag the device already has.

    A served hub answers this route before FastAPI routes it (hub/_hot_path.py);
    this endpoint documents it and serves apps run without that wrapper.
    """
    peer = client_peer(request)
    answer = await answer_desired(hub_state(request), peer, if_none_match, wait)
    headers = {"etag": answer.etag} if answer.etag else None
    if answer.status == 304:
        return Response(status_code=304, headers=headers)
    return Response(answer.body, headers=headers, media_type="application/json")
