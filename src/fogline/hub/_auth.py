"""Who is calling: a device by its client certificate, an operator by token."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from cryptography import x509
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from fogline.security import device_id_from_cert

from ._errors import ForbiddenError, UnauthorizedError
from ._schema import DeviceRow, TokenRow
from ._state import HubState
from ._store import active_device, operator_for_token


def hub_state(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


def db_session(request: Request) -> Iterator[Session]:
    """A session for one request. Handlers commit explicitly; anything not
    committed (an error on the way) is rolled back when the session closes."""
    with hub_state(request).sessions() as session:
        yield session


def client_cert_pem(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]) if chain else None


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A device that proved who it is with a current certificate."""

    device_id: str


def check_device(session: Session, request: Request) -> DeviceRow:
    """The device whose certificate is on this connection.

    The TLS layer has verified the certificate against the fleet CA; here we
    check the device still exists, is not revoked, and that this is the
    certificate we issued it (not an older one).
    """
    pem = client_cert_pem(request)
    if pem is None:
        raise UnauthorizedError("the device API needs a client certificate issued by the fleet CA")
    cert = x509.load_pem_x509_certificate(pem.encode())
    device_id = device_id_from_cert(cert)
    if device_id is None:
        raise ForbiddenError("client certificate has no device id")
    row = active_device(session, device_id)
    if row.cert_serial != format(cert.serial_number, "x"):
        raise ForbiddenError("client certificate has been superseded")
    return row


def require_device(request: Request) -> DeviceIdentity:
    """Authenticate a device in a short session of its own, so that long-polls
    do not hold a database connection while they wait."""
    with hub_state(request).sessions() as session:
        return DeviceIdentity(check_device(session, request).id)


def require_operator(
    request: Request, session: Annotated[Session, Depends(db_session)]
) -> TokenRow:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("missing bearer token")
    row = operator_for_token(session, token)
    if row is None:
        raise UnauthorizedError("invalid token")
    return row
