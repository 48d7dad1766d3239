"""Who is calling: a device by its client certificate, an operator by token."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.types import Scope

from ._devices import authenticated_device
from ._errors import ForbiddenError, UnauthorizedError
from ._schema import DeviceRow, TokenRow
from ._state import HubState
from ._tls import PEER_SCOPE_KEY, PeerCertificate
from ._tokens import operator_for_token


def hub_state(request: Request) -> HubState:
    state: HubState = request.app.state.hub
    return state


async def _state_dependency(request: Request) -> HubState:
    # async: FastAPI runs a plain-def dependency on a worker thread, a hop
    # that costs more than this lookup.
    return hub_state(request)


StateDep = Annotated[HubState, Depends(_state_dependency)]


def db_session(request: Request) -> Iterator[Session]:
    """A session for one request. Handlers commit explicitly; anything not
    committed (an error on the way) is rolled back when the session closes."""
    with hub_state(request).sessions() as session:
        yield session


@dataclass(frozen=True, slots=True)
class DevicePeer:
    device_id: str
    serial_hex: str


def has_client_cert(request: Request) -> bool:
    return isinstance(request.scope.get(PEER_SCOPE_KEY), PeerCertificate)


def client_peer(request: Request) -> DevicePeer:
    """The device id and serial of the verified client certificate (see scope_peer)."""
    return scope_peer(request.scope)


def scope_peer(scope: Scope) -> DevicePeer:
    """The device id and serial of the verified client certificate, read once
    per connection by the TLS protocol (see _tls.py).

    Raises:
        UnauthorizedError: no client certificate on the connection.
        ForbiddenError: the certificate names no device.
    """
    peer = scope.get(PEER_SCOPE_KEY)
    if not isinstance(peer, PeerCertificate):  # same test as has_client_cert, for mypy
        raise UnauthorizedError("the device API needs a client certificate issued by the fleet CA")
    if peer.device_id is None:
        raise ForbiddenError("client certificate has no device id")
    return DevicePeer(peer.device_id, peer.serial_hex)


def check_device(session: Session, request: Request) -> DeviceRow:
    """The device whose certificate is on this connection.

    The TLS layer has verified the certificate against the fleet CA; here we
    check the device still exists, is not revoked, and that this is the
    certificate we issued it (not an older one).
    """
    peer = client_peer(request)
    return authenticated_device(session, peer.device_id, peer.serial_hex)


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
