"""The hub's operations on its database: claims, enrollment, devices, tokens.

Routers call these with a Session and commit; nothing here knows HTTP
beyond raising ApiError subclasses.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Final, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fogline.protocol import (
    ClaimCreate,
    ClaimStatus,
    ClaimView,
    DeviceStatus,
    DeviceView,
    EnrollRequest,
    LabelChange,
    Report,
    name_allowed,
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

from ._device_labels import effective_labels, platform_labels
from ._errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from ._schema import ClaimRow, DeviceRow, RevokedKeyRow, TokenRow

ADMIN_ROLE: Final = "admin"
# The name of the admin token the hub creates at first start (DATA_DIR/admin-token).
BOOTSTRAP_ADMIN: Final = "admin"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- operator tokens ---------------------------------------------------------


def ensure_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Create the first admin token; None when one exists already (even revoked:
    a rotated token is replaced by `rotate_admin_token`, not here)."""
    if session.scalar(select(TokenRow.id).where(TokenRow.role == ADMIN_ROLE).limit(1)):
        return None
    return _add_bootstrap_admin(session, prefix)


def rotate_admin_token(session: Session, prefix: str) -> NewToken | None:
    """Revoke the bootstrap admin token and create its successor; None when the
    hub never created one (it has not started on this database yet).

    Tokens are checked against the database on every request, so a running
    hub refuses the old token as soon as this commits.
    """
    current = select(TokenRow.id).where(
        TokenRow.name == BOOTSTRAP_ADMIN, TokenRow.role == ADMIN_ROLE
    )
    if session.scalar(current.limit(1)) is None:
        return None
    session.execute(
        update(TokenRow)
        .where(
            TokenRow.name == BOOTSTRAP_ADMIN,
            TokenRow.role == ADMIN_ROLE,
            TokenRow.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return _add_bootstrap_admin(session, prefix)


def _add_bootstrap_admin(session: Session, prefix: str) -> NewToken:
    token = new_token(prefix)
    session.add(
        TokenRow(
            id=token.token_id,
            name=BOOTSTRAP_ADMIN,
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
        names=list(row.names or ()),
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
        names=list(spec.names),
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


# -- devices -----------------------------------------------------------------


def enroll_device(
    session: Session, ca: CertificateAuthority, request: EnrollRequest
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
        return _retried_enrollment(ca, request, checked, claim, existing, fingerprint)
    _count_use(session, claim)
    device_id = str(uuid.uuid4())
    issued = ca.issue_device_cert(checked.csr, device_id)
    now = utcnow()
    row = DeviceRow(
        id=device_id,
        name=request.name,
        labels=dict(claim.labels),
        reported_labels=dict(request.labels),
        platform_labels=platform_labels(request.facts.model_dump()),
        facts=request.facts.model_dump(),
        claim_id=claim.id,
        cert_serial=format(issued.serial, "x"),
        cert_not_after=issued.not_after,
        key_sha256=fingerprint,
        enrolled_at=now,
        last_seen=now,
    )
    session.add(row)
    session.flush()
    return row, issued.pem


def _retried_enrollment(
    ca: CertificateAuthority,
    request: EnrollRequest,
    checked: CheckedCsr,
    claim: ClaimRow,
    existing: DeviceRow,
    fingerprint: str,
) -> tuple[DeviceRow, bytes]:
    """The same device asking again (its first answer was lost): same key, same
    claim, still valid. It gets a fresh certificate for its id and takes no
    second use of the claim; anyone else gets a conflict."""
    same_device = (
        existing.key_sha256 == fingerprint
        and existing.revoked_at is None
        and existing.claim_id == claim.id
    )
    if not same_device:
        if claim.uses >= claim.max_uses:
            # A used-up claim enrolls nobody new: it answers as any refused
            # claim, so it cannot tell taken names from free ones either.
            raise _claim_refused()
        raise ConflictError(f"device name {request.name!r} is taken", field="name")
    issued = ca.issue_device_cert(checked.csr, existing.id)
    existing.cert_serial = format(issued.serial, "x")
    existing.cert_not_after = issued.not_after
    return existing, issued.pem


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
    """The device row's columns a report sets. Never what the device is
    selected by: its labels are stored as requested labels, and its facts do
    not move the platform labels taken at enrollment."""
    return {
        "facts": report.facts.model_dump(),
        "reported_labels": dict(report.labels),
        "last_seen": now,
        "reported": report.model_dump(
            mode="json", exclude={"facts", "labels", "applied"}, exclude_none=True
        ),
    }


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
        reported_labels=dict(row.reported_labels),
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


def change_labels(row: DeviceRow, change: LabelChange) -> dict[str, str]:
    """Apply an operator's label change: promote, then set, then remove.
    Returns the promoted labels with the values the device asked for.

    Raises:
        BadRequestError: a key to promote that the device did not ask for.
    """
    missing = [key for key in change.promote if key not in row.reported_labels]
    if missing:
        asked = ", ".join(sorted(row.reported_labels)) or "nothing"
        raise BadRequestError(
            f"device {row.name!r} did not ask for label(s) {', '.join(missing)} "
            f"(it asked for: {asked})",
            field="promote",
        )
    promoted = {key: row.reported_labels[key] for key in change.promote}
    labels = {**row.labels, **promoted, **change.set}
    for key in change.remove:
        labels.pop(key, None)
    row.labels = labels
    return promoted


def revoke_device(session: Session, row: DeviceRow) -> None:
    """Revoke a device and refuse its key at enrollment from now on."""
    now = utcnow()
    if row.revoked_at is None:
        row.revoked_at = now
    if row.key_sha256 is not None and session.get(RevokedKeyRow, row.key_sha256) is None:
        session.add(
            RevokedKeyRow(
                key_sha256=row.key_sha256,
                revoked_at=row.revoked_at,
                device_id=row.id,
                device_name=row.name,
            )
        )


def remove_device(session: Session, row: DeviceRow, *, force: bool) -> None:
    """Delete a revoked device (its name is free again; its key stays refused).
    With `force`, a device still active is revoked first.

    Raises:
        ConflictError: the device is not revoked and `force` is not given.
    """
    if row.revoked_at is None and not force:
        raise ConflictError(
            f"device {row.name!r} is not revoked; revoke it first, or remove it with --force "
            "(which revokes it)",
            field="force",
        )
    revoke_device(session, row)
    session.flush()  # the revoked key is written before the row goes
    session.delete(row)


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
