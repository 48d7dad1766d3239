"""Enrollment: a device with a valid claim and a CSR gets its certificate."""

import datetime as dt
import uuid
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fogline.protocol import EnrollRequest, name_allowed
from fogline.security import (
    CLAIM_PREFIX,
    CertificateAuthority,
    CheckedCsr,
    CsrRejectedError,
    TokenError,
    check_csr,
    parse_token,
    public_key_sha256,
    secret_matches,
)

from ._clock import utcnow
from ._device_labels import platform_labels
from ._errors import BadRequestError, ConflictError, ForbiddenError
from ._schema import ClaimRow, DeviceRow, RevokedKeyRow

# One answer for every claim that may not enroll this device (unknown, bad
# secret, revoked, expired, used up, or a name outside its patterns), and it
# comes before anything about the name is looked at: a caller without a
# claim learns nothing about which claims or device names exist.
_CLAIM_REFUSED: Final = "claim refused: unknown, revoked, expired or used up"


def _claim_refused() -> ForbiddenError:
    return ForbiddenError(_CLAIM_REFUSED, field="claim")


def _valid_claim(session: Session, token: str, name: str) -> ClaimRow:
    """The claim behind `token`, if it may enroll a device called `name` now:
    known, its secret matching, not revoked, not expired, `name` within its
    name patterns. Uses are counted apart (`_count_use`): a retried
    enrollment needs a valid claim but takes no second use.

    Raises:
        ForbiddenError: refused (one message for every reason).
    """
    try:
        parsed = parse_token(token)
    except TokenError:
        raise _claim_refused() from None
    if parsed.prefix != CLAIM_PREFIX:
        raise _claim_refused()
    row = session.get(ClaimRow, parsed.token_id)
    if row is None or not secret_matches(parsed.secret, row.secret_hash):
        raise _claim_refused()
    if row.revoked_at is not None or row.expires_at <= utcnow():
        raise _claim_refused()
    if not name_allowed(name, row.names or ()):
        raise _claim_refused()
    return row


def _count_use(session: Session, claim: ClaimRow) -> None:
    """Count one use of a valid claim, atomically against races.

    Raises:
        ForbiddenError: the claim is used up (the same answer as any refusal).
    """
    # The WHERE clause is the guard: two devices racing for the last use
    # cannot both win, on SQLite or PostgreSQL.
    result = session.execute(
        update(ClaimRow)
        .where(ClaimRow.id == claim.id, ClaimRow.uses < ClaimRow.max_uses)
        .values(uses=ClaimRow.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise _claim_refused()


def enroll_device(
    session: Session,
    ca: CertificateAuthority,
    request: EnrollRequest,
    validity: dt.timedelta = dt.timedelta(days=365),
) -> tuple[DeviceRow, bytes]:
    """Enroll a device from a claim and a CSR; returns the row and its cert PEM.

    The new row is flushed: a device that took the same name meanwhile makes
    this raise IntegrityError, and the caller settles the race by trying
    again in a new transaction (which then sees the winner).

    Raises:
        ForbiddenError: the claim is refused (first, and one answer for every
            reason), the CSR names another device, or its key was revoked.
        BadRequestError: the CSR is malformed or its key too weak.
        ConflictError: another device holds the name.
        IntegrityError: the name was taken concurrently (see above).
    """
    claim = _valid_claim(session, request.claim, request.name)
    try:
        checked = check_csr(request.csr)
    except CsrRejectedError as exc:
        raise BadRequestError(str(exc), field="csr") from exc
    if checked.common_name not in (None, request.name):
        # A CSR naming someone else is an attempt to take their identity.
        raise ForbiddenError(
            f"CSR subject CN {checked.common_name!r} does not match the requested name",
            field="csr",
        )
    fingerprint = public_key_sha256(checked.csr)
    if session.get(RevokedKeyRow, fingerprint) is not None:
        # Revocation sticks: not under a new name, not after `devices rm`.
        raise ForbiddenError(
            "this key belongs to a revoked device; a device needs a new key to enroll",
            field="csr",
        )
    existing = session.scalar(select(DeviceRow).where(DeviceRow.name == request.name))
    if existing is not None:
        return _retried_enrollment(
            session, ca, request, checked, claim, existing, fingerprint, validity
        )
    _count_use(session, claim)
    device_id = str(uuid.uuid4())
    issued = ca.issue_device_cert(checked.csr, device_id, validity)
    now = utcnow()
    row = DeviceRow(
        id=device_id,
        name=request.name,
        labels=dict(claim.labels),
        reported_labels=dict(request.labels),
        platform_labels=platform_labels(request.facts.model_dump()),
        facts=request.facts.model_dump(),
        agent_version=request.facts.agent_version,
        claim_id=claim.id,
        cert_serial=format(issued.serial, "x"),
        cert_ca_key_id=ca.key_id,
        cert_not_after=issued.not_after,
        key_sha256=fingerprint,
        enrolled_at=now,
        last_seen=now,
    )
    session.add(row)
    session.flush()
    return row, issued.pem


def _retried_enrollment(
    session: Session,
    ca: CertificateAuthority,
    request: EnrollRequest,
    checked: CheckedCsr,
    claim: ClaimRow,
    existing: DeviceRow,
    fingerprint: str,
    validity: dt.timedelta,
) -> tuple[DeviceRow, bytes]:
    """The same device asking again: same key, not revoked, and either its
    first answer was lost (same claim, still valid: no second use) or its
    certificate expired while it was offline (any valid claim for its name,
    which takes a use when it is another claim). It gets a fresh
    certificate for its id, keeping its labels and history; anyone else
    gets a conflict.

    The key is the proof: a node that lost its key, or an impostor with a
    claim, cannot take an existing device over.
    """
    same_key = existing.key_sha256 == fingerprint and existing.revoked_at is None
    expired = existing.cert_not_after <= utcnow()
    same_device = same_key and (existing.claim_id == claim.id or expired)
    if same_device and existing.claim_id != claim.id:
        _count_use(session, claim)
    if not same_device:
        if claim.uses >= claim.max_uses:
            # A used-up claim enrolls nobody new: it answers as any refused
            # claim, so it cannot tell taken names from free ones either.
            raise _claim_refused()
        raise ConflictError(f"device name {request.name!r} is taken", field="name")
    issued = ca.issue_device_cert(checked.csr, existing.id, validity)
    existing.cert_serial = format(issued.serial, "x")
    existing.prev_cert_serial = None
    existing.cert_ca_key_id = ca.key_id
    existing.cert_not_after = issued.not_after
    return existing, issued.pem
