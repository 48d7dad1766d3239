"""The hub's operations on its database: claims, enrollment, devices, tokens.

Routers call these with a Session and commit; nothing here knows HTTP
beyond raising ApiError subclasses.
"""

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fogline.protocol import (
    PLATFORM_LABEL_PREFIX,
    ClaimCreate,
    ClaimStatus,
    ClaimView,
    DeviceStatus,
    DeviceView,
    EnrollRequest,
    LabelChange,
    Report,
)
from fogline.security import (
    CLAIM_PREFIX,
    CertificateAuthority,
    CheckedCsr,
    CsrRejectedError,
    NewToken,
    TokenError,
    check_csr,
    new_token,
    parse_token,
    public_key_sha256,
    secret_matches,
)

from ._errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from ._schema import ClaimRow, DeviceRow, TokenRow

ADMIN_ROLE: Final = "admin"
# Facts that become platform labels (fogline.dev/os, fogline.dev/arch).
LABEL_FACTS: Final = ("os", "arch")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- operator tokens ---------------------------------------------------------


def ensure_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Create the first admin token; None when one exists already."""
    if session.scalar(select(TokenRow.id).where(TokenRow.role == ADMIN_ROLE).limit(1)):
        return None
    token = new_token(prefix)
    session.add(
        TokenRow(
            id=token.token_id,
            name="admin",
            role=ADMIN_ROLE,
            secret_hash=token.secret_hash,
            created_at=utcnow(),
        )
    )
    return token


def operator_for_token(session: Session, token: str) -> TokenRow | None:
    try:
        parsed = parse_token(token)
    except TokenError:
        return None
    row = session.get(TokenRow, parsed.token_id)
    if row is None or row.revoked_at is not None:
        return None
    return row if secret_matches(parsed.secret, row.secret_hash) else None


# -- claims --------------------------------------------------------------------


def claim_view(row: ClaimRow, now: dt.datetime) -> ClaimView:
    status: ClaimStatus
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at <= now:
        status = "expired"
    elif row.uses >= row.max_uses:
        status = "used-up"
    else:
        status = "active"
    return ClaimView(
        id=row.id,
        labels=row.labels,
        max_uses=row.max_uses,
        uses=row.uses,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        status=status,
    )


def create_claim(session: Session, spec: ClaimCreate) -> tuple[ClaimRow, str]:
    token = new_token(CLAIM_PREFIX)
    now = utcnow()
    row = ClaimRow(
        id=token.token_id,
        secret_hash=token.secret_hash,
        labels=dict(spec.labels),
        max_uses=spec.max_uses,
        uses=0,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=spec.expires_in_s),
    )
    session.add(row)
    return row, token.token


def list_claims(session: Session) -> Sequence[ClaimRow]:
    return session.scalars(select(ClaimRow).order_by(ClaimRow.created_at)).all()


def revoke_claim(session: Session, claim_id: str) -> ClaimRow:
    row = session.get(ClaimRow, claim_id)
    if row is None:
        raise NotFoundError(f"no claim {claim_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def _use_claim(session: Session, token: str) -> ClaimRow:
    """Check a claim token and count one use, atomically against races.

    Every refusal reads the same to the caller, so a probe learns nothing
    about which claims exist.
    """
    refused = ForbiddenError("claim refused: unknown, revoked, expired or used up", field="claim")
    try:
        parsed = parse_token(token)
    except TokenError:
        raise refused from None
    if parsed.prefix != CLAIM_PREFIX:
        raise refused
    row = session.get(ClaimRow, parsed.token_id)
    now = utcnow()
    if row is None or not secret_matches(parsed.secret, row.secret_hash):
        raise refused
    if row.revoked_at is not None or row.expires_at <= now:
        raise refused
    # The WHERE clause is the guard: two devices racing for the last use
    # cannot both win, on SQLite or PostgreSQL.
    result = session.execute(
        update(ClaimRow)
        .where(ClaimRow.id == row.id, ClaimRow.uses < ClaimRow.max_uses)
        .values(uses=ClaimRow.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise refused
    session.refresh(row)
    return row


# -- devices -----------------------------------------------------------------


def enroll_device(
    session: Session, ca: CertificateAuthority, request: EnrollRequest
) -> tuple[DeviceRow, bytes]:
    """Enroll a device from a claim and a CSR; returns the row and its cert PEM."""
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
    existing = session.scalar(select(DeviceRow).where(DeviceRow.name == request.name))
    if existing is not None:
        return _retried_enrollment(session, ca, request, checked, existing, fingerprint)
    claim = _use_claim(session, request.claim)
    device_id = str(uuid.uuid4())
    issued = ca.issue_device_cert(checked.csr, device_id)
    now = utcnow()
    row = DeviceRow(
        id=device_id,
        name=request.name,
        labels=dict(claim.labels),
        agent_labels=dict(request.labels),
        facts=request.facts.model_dump(),
        claim_id=claim.id,
        cert_serial=format(issued.serial, "x"),
        cert_not_after=issued.not_after,
        key_sha256=fingerprint,
        enrolled_at=now,
        last_seen=now,
    )
    session.add(row)
    return row, issued.pem


def _retried_enrollment(
    session: Session,
    ca: CertificateAuthority,
    request: EnrollRequest,
    checked: CheckedCsr,
    existing: DeviceRow,
    fingerprint: str,
) -> tuple[DeviceRow, bytes]:
    """The same device asking again (its first answer was lost): same key, same
    claim. It gets a fresh certificate for its id; anyone else gets a conflict."""
    same_device = (
        existing.key_sha256 == fingerprint
        and existing.revoked_at is None
        and _claim_matches(session, request.claim, existing.claim_id)
    )
    if not same_device:
        raise ConflictError(f"device name {request.name!r} is taken", field="name")
    issued = ca.issue_device_cert(checked.csr, existing.id)
    existing.cert_serial = format(issued.serial, "x")
    existing.cert_not_after = issued.not_after
    return existing, issued.pem


def _claim_matches(session: Session, token: str, claim_id: str | None) -> bool:
    try:
        parsed = parse_token(token)
    except TokenError:
        return False
    row = session.get(ClaimRow, parsed.token_id)
    return row is not None and row.id == claim_id and secret_matches(parsed.secret, row.secret_hash)


class CertifiedDevice(Protocol):
    """What authenticating a device needs: a DeviceRow, or a row of columns."""

    @property
    def revoked_at(self) -> dt.datetime | None: ...
    @property
    def cert_serial(self) -> str: ...


def device_refusal(device: CertifiedDevice | None, cert_serial: str) -> ForbiddenError | None:
    """Why a verified client certificate with this serial may not act as this
    device (unknown, revoked, or an older certificate), or None."""
    if device is None:
        return ForbiddenError("unknown device")
    if device.revoked_at is not None:
        return ForbiddenError("device is revoked")
    if device.cert_serial != cert_serial:
        return ForbiddenError("client certificate has been superseded")
    return None


def authenticated_device(session: Session, device_id: str, cert_serial: str) -> DeviceRow:
    """The device behind a verified client certificate.

    Raises:
        ForbiddenError: see `device_refusal`.
    """
    row = session.get(DeviceRow, device_id)
    refusal = device_refusal(row, cert_serial)
    if refusal is not None:
        raise refusal
    assert row is not None  # device_refusal refuses a missing row
    return row


def report_columns(report: Report, now: dt.datetime) -> dict[str, Any]:
    """The device row's columns a report sets."""
    return {
        "facts": report.facts.model_dump(),
        "agent_labels": dict(report.labels),
        "last_seen": now,
        "reported": report.model_dump(
            mode="json", exclude={"facts", "labels", "applied"}, exclude_none=True
        ),
    }


def record_report(row: DeviceRow, report: Report) -> None:
    for column, value in report_columns(report, utcnow()).items():
        setattr(row, column, value)


def report_moves_labels(
    agent_labels: Mapping[str, str], facts: Mapping[str, Any], report: Report
) -> bool:
    """Whether a report changes what a device's effective labels are made of
    (its agent labels or the facts that become platform labels)."""
    if dict(report.labels) != dict(agent_labels):
        return True
    return any(getattr(report.facts, fact) != facts.get(fact) for fact in LABEL_FACTS)


def effective_labels(row: DeviceRow) -> dict[str, str]:
    """Agent labels, overridden by operator/claim labels, plus platform facts."""
    labels = dict(row.agent_labels)
    for key, value in row.labels.items():
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    for fact in LABEL_FACTS:
        if row.facts.get(fact):
            labels[f"{PLATFORM_LABEL_PREFIX}{fact}"] = str(row.facts[fact])
    return labels


def device_status(row: DeviceRow, now: dt.datetime, offline_after_s: float) -> DeviceStatus:
    if row.revoked_at is not None:
        return "revoked"
    if row.last_seen is not None and (now - row.last_seen).total_seconds() <= offline_after_s:
        return "online"
    return "offline"


def device_view(row: DeviceRow, now: dt.datetime, offline_after_s: float) -> DeviceView:
    facts = row.facts
    return DeviceView(
        id=row.id,
        name=row.name,
        labels=effective_labels(row),
        status=device_status(row, now, offline_after_s),
        enrolled_at=row.enrolled_at,
        last_seen=row.last_seen,
        agent_version=facts.get("agent_version"),
        hostname=facts.get("hostname"),
        os=facts.get("os"),
        arch=facts.get("arch"),
        uptime_s=facts.get("uptime_s"),
        claim_id=row.claim_id,
        cert_not_after=row.cert_not_after,
        reported=row.reported or {},
    )


def list_devices(session: Session) -> Sequence[DeviceRow]:
    return session.scalars(select(DeviceRow).order_by(DeviceRow.name)).all()


def find_device(session: Session, ref: str) -> DeviceRow:
    """A device by id or by name."""
    row = session.get(DeviceRow, ref) or session.scalar(
        select(DeviceRow).where(DeviceRow.name == ref)
    )
    if row is None:
        raise NotFoundError(f"no device with id or name {ref!r}")
    return row


def change_labels(row: DeviceRow, change: LabelChange) -> None:
    for key in change.set:
        if key.startswith(PLATFORM_LABEL_PREFIX):
            raise BadRequestError(
                f"labels under {PLATFORM_LABEL_PREFIX} are reported by the agent", field="set"
            )
    labels = dict(row.labels)
    labels.update(change.set)
    for key in change.remove:
        labels[key] = None  # a tombstone also hides the agent's own label
    row.labels = labels


def revoke_device(row: DeviceRow) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def count_devices_by_status(
    session: Session, now: dt.datetime, offline_after_s: float
) -> dict[str, int]:
    """Device counts by status, computed in SQL so a scrape stays cheap at 10k devices."""
    cutoff = now - dt.timedelta(seconds=offline_after_s)
    total = session.scalar(select(func.count()).select_from(DeviceRow)) or 0
    revoked = (
        session.scalar(
            select(func.count()).select_from(DeviceRow).where(DeviceRow.revoked_at.is_not(None))
        )
        or 0
    )
    online = (
        session.scalar(
            select(func.count())
            .select_from(DeviceRow)
            .where(DeviceRow.revoked_at.is_(None), DeviceRow.last_seen >= cutoff)
        )
        or 0
    )
    return {"online": online, "offline": total - online - revoked, "revoked": revoked}
