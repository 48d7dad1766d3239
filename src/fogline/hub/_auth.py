"""Who is calling: a device by its client certificate, a person by token.

`require_operator` authenticates the bearer token and checks the route's
permission in `ROUTE_PERMISSIONS` (_permissions.py) against the token's role.
"""

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.types import Scope

from fogline.security import Permission, role_allows

from ._audit import note_actor
from ._clock import utcnow
from ._devices import authenticated_device
from ._errors import ForbiddenError, UnauthorizedError
from ._people import Principal, authenticate
from ._permissions import granted, route_need
from ._schema import DeviceRow
from ._state import HubState
from ._tls import PEER_SCOPE_KEY, PeerCertificate


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
    committed (an error on the way) is rolled back when the session closes.

    FastAPI closes it only after the answer is sent; routes that take it
    belong to routers of `SessionEndingRoute`, which close it as they return.
    """
    with hub_state(request).sessions() as session:
        yield session


def _closing_sessions(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint`, closing every Session among its arguments as it returns
    (committed work stays; what it did not commit is rolled back)."""

    def close(arguments: dict[str, Any]) -> None:
        for value in arguments.values():
            if isinstance(value, Session):
                value.close()

    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def ending_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await endpoint(*args, **kwargs)
            finally:
                close(kwargs)

        return ending_async

    @functools.wraps(endpoint)
    def ending(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        finally:
            close(kwargs)

    return ending


class SessionEndingRoute(APIRoute):
    """A route whose request session gives its connection back when the
    handler returns, not after the answer is sent.

    FastAPI validates a plain-def route's answer on a worker thread and
    sends it before it closes the request's session: a connection held
    meanwhile waits for a free thread and then for the client, and under a
    burst every thread waited for a connection while every connection
    waited for a thread (the pool deadlock tests/hub/test_request_connections.py
    guards). Answers are built from values read in the handler
    (expire_on_commit is off), so nothing is loaded after the close.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _closing_sessions(endpoint), **kwargs)


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
    device = authenticated_device(session, peer.device_id, peer.serial_hex)
    note_actor(device_actor(device.name))
    return device


def actor_of(principal: Principal) -> str:
    """How the audit trail names an operator: `admin` for the bootstrap token,
    `user:<name>` for a user's token or session (see hub/_people.py)."""
    return principal.name


def device_actor(name: str) -> str:
    """How the audit trail names a device."""
    return f"device:{name}"


def require_operator(
    request: Request, session: Annotated[Session, Depends(db_session)]
) -> Principal:
    """The caller behind the bearer token, allowed to call this route.

    Raises:
        UnauthorizedError: no token, or one that is not valid (see `authenticate`).
        ForbiddenError: the route's permission is not the role's, or the
            route is missing from the permission table (refused to everyone).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("missing bearer token")
    principal = authenticate(session, token, utcnow())
    note_actor(actor_of(principal))  # before the permission check: refusals name who
    route = getattr(request.scope.get("route"), "path", None)
    need = route_need(request.method, route) if isinstance(route, str) else None
    if not isinstance(need, Permission):
        raise ForbiddenError(
            f"{request.method} {route or request.url.path} is not in the hub's permission "
            "table; it is refused to every token"
        )
    if not role_allows(principal.role, need):
        raise ForbiddenError(
            f"{principal.name} has role {principal.role}, and {request.method} {route} needs "
            f"permission {need.value!r}, which only {granted(need)}"
        )
    return principal
