"""The TUF API (see hub/_tuf.py): metadata for nodes, uploads for operators.

GET /v1/tuf/metadata/{filename}   an enrolled device (client certificate) or
                                  an operator: `timestamp.json`,
                                  `<version>.<role>.json`, or `<role>.json`
                                  (the newest); what python-tuf's ngclient asks
PUT /v1/tuf/roles/{role}          operator (release): the body is a role's
                                  metadata (root, targets, module-<name>),
                                  signed offline or by release keys
GET /v1/tuf/online-key            operator: the public key the hub signs
                                  snapshot and timestamp with (PEM)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fogline.protocol import API_PREFIX
from fogline.tuf import MAX_METADATA_BYTES

from .._audit import record_audit
from .._audit_trail import audited
from .._auth import (
    DevicePeer,
    SessionEndingRoute,
    actor_of,
    check_device,
    db_session,
    has_client_cert,
    hub_state,
    require_operator,
)
from .._clock import utcnow
from .._devices import check_certified
from .._errors import BadRequestError, ConflictError, UnauthorizedError, UnavailableError
from .._people import Principal
from .._state import HubState
from .._tuf import OnlineKey, metadata_file, upload

router = APIRouter(prefix=API_PREFIX, tags=["tuf"], route_class=SessionEndingRoute)
SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]


def _key(state: HubState) -> OnlineKey:
    if state.tuf_key_path is None:
        raise UnavailableError("this hub has no TUF online key configured")
    return OnlineKey(state.tuf_key_path)


def _reader(request: Request, session: SessionDep) -> None:
    """An operator (bearer token, READ) or an enrolled, unrevoked device."""
    if request.headers.get("authorization"):
        require_operator(request, session)
        return
    if not has_client_cert(request):
        raise UnauthorizedError("send an operator bearer token or a device client certificate")
    check_device(session, request)


@router.get("/tuf/metadata/{filename}", dependencies=[Depends(_reader)])
def tuf_metadata(filename: str, request: Request, session: SessionDep) -> Response:
    """One metadata file, the bytes as signed; the timestamp is renewed on the
    way when it has lived half its time."""
    state = hub_state(request)
    body = metadata_file(
        session, _key(state), state.settings.tuf, filename[:200], utcnow(), state.tuf_cache
    )
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


def answer_tuf_metadata(state: HubState, peer: DevicePeer, filename: str) -> bytes:
    """`tuf_metadata` for a device, as the device hot path (hub/_hot_path.py)
    answers it: the device checked (known, not revoked, this certificate) in
    the same session that reads the metadata. Blocking: call it in a thread.

    Raises:
        ForbiddenError: unknown or revoked device, or a superseded certificate.
        NotFoundError: no such role or version.
        UnavailableError: no TUF online key configured.
    """
    with state.sessions() as session:
        check_certified(session, peer.device_id, peer.serial_hex)
        return metadata_file(
            session, _key(state), state.settings.tuf, filename[:200], utcnow(), state.tuf_cache
        )


@router.put("/tuf/roles/{role}", openapi_extra=audited("tuf.upload", target="{role}"))
async def tuf_upload(role: str, request: Request, op: OperatorDep) -> dict[str, Any]:
    """Upload a new version of `role`; the hub checks it against what it trusts,
    then signs a new snapshot and timestamp. Audited, refusals too."""
    data = await request.body()
    if len(data) > MAX_METADATA_BYTES:
        raise BadRequestError(f"larger than {MAX_METADATA_BYTES} bytes", field="body")
    state = hub_state(request)
    return await run_in_threadpool(_store, state, role[:100], data, actor_of(op))


def _store(state: HubState, role: str, data: bytes, actor: str) -> dict[str, Any]:
    try:
        with state.transaction() as session:
            version, created = upload(
                session, _key(state), state.settings.tuf, role, data, utcnow()
            )
            record_audit(session, actor, "tuf.upload", role, version=version, created=created)
    except IntegrityError:
        # Another upload (or replica) stored the same version, or signed the
        # same snapshot version, first: nothing of this one was kept.
        raise ConflictError(
            f"TUF {role} metadata: another upload changed the repository meanwhile; push again",
            field="version",
        ) from None
    return {"role": role, "version": version, "created": created}


@router.get("/tuf/online-key")
def tuf_online_key(request: Request, _op: OperatorDep) -> dict[str, str]:
    """The hub's online public key, for `fogline tuf init --online-key`."""
    key = _key(hub_state(request))
    return {"keyid": key.signer().public_key.keyid, "public_key": key.public_pem()}
