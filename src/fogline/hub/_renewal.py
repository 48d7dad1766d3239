"""Renewal: a device trades a CSR for a new certificate over mTLS.

The device proves who it is with the certificate it has (verified by the
TLS layer against the fleet's trust bundle); the CSR only carries the key
the new certificate is for. Refused, with the reason in the audit log:
a revoked or unknown device, a superseded certificate, a CSR naming
another device, a key of another kind than the one it renews from (a
device does not get to weaken its own key), or a revoked key.
"""

import datetime as dt
from typing import Any, NamedTuple, cast

from cryptography import x509
from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from fogline.security import (
    CertificateAuthority,
    CsrRejectedError,
    check_csr,
    key_kind,
    public_key_sha256,
)

from ._devices import device_refusal
from ._errors import BadRequestError, ConflictError, ForbiddenError
from ._schema import DeviceRow, RevokedKeyRow


class Renewal(NamedTuple):
    """A renewal's answer: the device's row, the certificate (PEM) and
    whether it is one already issued, asked for again (nothing written)."""

    row: DeviceRow
    cert_pem: bytes
    replayed: bool


def renew_device(
    session: Session,
    ca: CertificateAuthority,
    device_id: str,
    peer_serial: str,
    peer_pem: str,
    csr_pem: str,
    validity: dt.timedelta,
) -> Renewal:
    """Issue the device a new certificate for the CSR's key; the caller commits.

    The certificate presented stays accepted (prev_cert_serial) until the
    device shows the new one: a node that never got this answer renews again
    with it.

    Two renewals of one device at once (a node's retry while its first
    request is still being served): the first to write wins, the other is
    refused with 409 and writes nothing. Had the second overwritten the
    first, the node holding the first answer would be refused as
    superseded on every call.

    A renewal already served, asked again (the same key, from the
    certificate it renewed from), is answered with the certificate it was
    issued, and nothing is written: the node may hold that answer or not,
    and both of its certificates stay accepted. A new one would supersede
    the answer the node may hold. This is a node's retry after a lost
    answer, and also its first request arriving late, after the retry was
    served.

    Raises:
        ForbiddenError: unknown or revoked device, a superseded certificate,
            a CSR naming another device, another kind of key, a revoked key.
        BadRequestError: the CSR is malformed or its key too weak.
        ConflictError: another renewal of this device wrote first.
    """
    # FOR UPDATE serialises renewals on PostgreSQL. populate_existing: the
    # route loaded the row before the lock, and a locking SELECT does not
    # refresh an object the session holds. SQLite ignores FOR UPDATE: the
    # write below checks instead.
    row = session.get(DeviceRow, device_id, with_for_update=True, populate_existing=True)
    refusal = device_refusal(row, peer_serial)
    if refusal is not None:
        raise refusal
    assert row is not None  # device_refusal refuses a missing row
    try:
        checked = check_csr(csr_pem)
    except CsrRejectedError as exc:
        raise BadRequestError(str(exc), field="csr") from exc
    if checked.common_name not in (None, row.name):
        raise ForbiddenError(
            f"CSR subject CN {checked.common_name!r} is not this device's name {row.name!r}",
            field="csr",
        )
    current_kind = key_kind(x509.load_pem_x509_certificate(peer_pem.encode()))
    new_kind = key_kind(checked.csr)
    if new_kind != current_kind:
        raise ForbiddenError(
            f"CSR key is {new_kind}; this device renews with a {current_kind} key", field="csr"
        )
    fingerprint = public_key_sha256(checked.csr)
    if session.get(RevokedKeyRow, fingerprint) is not None:
        raise ForbiddenError("this key belongs to a revoked device", field="csr")
    served = _served_renewal(row, peer_serial, fingerprint, ca.key_id)
    if served is not None:
        return Renewal(row, served, replayed=True)
    issued = ca.issue_device_cert(checked.csr, row.id, validity)
    # Written only if the row still has the certificate read above.
    claim = (
        update(DeviceRow)
        .where(DeviceRow.id == row.id, DeviceRow.cert_serial == row.cert_serial)
        .values(
            prev_cert_serial=peer_serial,
            cert_serial=format(issued.serial, "x"),
            cert_ca_key_id=ca.key_id,
            cert_not_after=issued.not_after,
            key_sha256=fingerprint,
            renewed_cert_pem=issued.pem.decode(),
        )
    )
    # An UPDATE's result is a CursorResult: rowcount is the rows it matched.
    written = cast("CursorResult[Any]", session.execute(claim))
    if written.rowcount != 1:
        raise ConflictError("another renewal of this device was served at the same time; retry")
    return Renewal(row, issued.pem, replayed=False)


def _served_renewal(
    row: DeviceRow, peer_serial: str, fingerprint: str, ca_key_id: str
) -> bytes | None:
    """The certificate a renewal already issued for this key from the
    presented certificate, if this request asks for it again; None when
    it is a renewal to serve. Not after a CA rotation: the node is to move
    to the new CA."""
    if (
        peer_serial == row.prev_cert_serial
        and fingerprint == row.key_sha256
        and ca_key_id == row.cert_ca_key_id
        and row.renewed_cert_pem is not None
    ):
        return row.renewed_cert_pem.encode()
    return None
