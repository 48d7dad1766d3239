"""The release API: push a signed archive, list and look up releases, download
artifacts by digest (with HTTP range requests, so devices resume).

    POST /v1/releases                       operator   body: the archive bytes,
                                                       header x-fogline-signature:
                                                       base64 of its .sig envelope
    GET  /v1/releases                       operator
    GET  /v1/releases/{name}/{version}      operator, or a device whose desired
                                            state names it (see hub/_device_scope.py)
    GET  /v1/releases/{name}/{version}/sbom operator: its CycloneDX SBOM
    GET  /v1/artifacts/{digest}             the same (Range supported); with
                                            --artifact-offload, a device is answered
                                            307 to a URL signed for nginx
    GET  /v1/artifacts/{digest}/delta?from=BASE  the same; a delta from the archive
                                            BASE (a release of the same module) to
                                            it, or 404: fetch the full archive
    DELETE /v1/releases/{name}/{version}    operator; 409 while something needs it

A release a device may not fetch is answered exactly as one that does not exist.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from fogline._log import event
from fogline.artifact import SignatureEnvelope
from fogline.protocol import API_PREFIX, SIGNATURE_HEADER

from .._artifact_response import ArtifactResponse
from .._audit import record_audit
from .._audit_trail import audited
from .._auth import (
    DevicePeer,
    StateDep,
    actor_of,
    check_device,
    has_client_cert,
    hub_state,
    require_operator,
)
from .._clock import utcnow
from .._device_scope import may_fetch_artifact, may_fetch_release
from .._devices import check_certified
from .._errors import NotFoundError, UnauthorizedError
from .._state import HubState
from ..releases import (
    DIGEST_RE,
    MAX_RELEASE_BYTES,
    ArtifactStore,
    ReleaseRejectedError,
    ReleaseView,
    StagedArtifact,
    attach_sbom,
    check_archive,
    check_digest,
    check_envelope,
    find_by_digest,
    find_release,
    gate_push,
    list_releases,
    new_release_row,
    parse_signature_header,
    read_sbom,
    release_sbom,
    release_view,
    remove_deltas,
    remove_release,
)

log = logging.getLogger("fogline.hub.release")
router = APIRouter(prefix=API_PREFIX, tags=["releases"])


def _operator(request: Request) -> str:
    """The calling operator's actor name (see actor_of), checked in a short
    session of its own: an upload can take minutes and must not hold a
    database connection."""
    with hub_state(request).sessions() as session:
        return actor_of(require_operator(request, session))


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads a release: an operator (every release) or a device (those its
    desired state names)."""

    device_id: str | None  # None: an operator


def _reader(request: Request) -> Reader:
    """An operator (bearer token) or an enrolled device (client certificate)."""
    if request.headers.get("authorization"):
        _operator(request)
        return Reader(device_id=None)
    if not has_client_cert(request):
        raise UnauthorizedError("send an operator bearer token or a device client certificate")
    with hub_state(request).sessions() as session:
        return Reader(device_id=check_device(session, request).id)


OperatorDep = Annotated[str, Depends(_operator)]
ReaderDep = Annotated[Reader, Depends(_reader)]


def _store(state: HubState) -> ArtifactStore:
    if state.artifacts_dir is None:
        raise ReleaseRejectedError(
            "store_unavailable", "this hub has no artifact store configured", status=503
        )
    return ArtifactStore(state.artifacts_dir)


def _precheck(state: HubState, envelope: SignatureEnvelope) -> ReleaseView | None:
    with state.sessions() as session:
        existing = check_envelope(session, envelope)
        return release_view(existing) if existing is not None else None


def _audit_push(session: Session, view: ReleaseView, pushed_by: str, *, created: bool) -> None:
    record_audit(
        session,
        pushed_by,
        "release.push",
        f"{view.name}@{view.version}",
        digest=view.digest,
        size=view.size,
        key_id=view.key_id,
        created=created,
    )


def _audit_unchanged_push(state: HubState, view: ReleaseView, pushed_by: str) -> None:
    """A push of bytes already there changes nothing, and is still an action."""
    with state.transaction() as session:
        _audit_push(session, view, pushed_by, created=False)


def _record(
    state: HubState,
    store: ArtifactStore,
    staged: StagedArtifact,
    envelope: SignatureEnvelope,
    pushed_by: str,
) -> tuple[ReleaseView, bool]:
    """Store the archive and its row; returns the release and whether it is new."""
    check_archive(staged, envelope, store.root / "tmp")
    sbom = read_sbom(staged.path)  # from the signed bytes, never from beside them
    # The file goes in first: a row never points at a missing archive. If the
    # insert then fails, the file is an unreferenced blob nobody is served.
    store.commit(staged)
    with state.sessions() as session:
        # Again, in the writing transaction: the key may have been replaced
        # or the version pushed by someone else while the bytes streamed in.
        existing = check_envelope(session, envelope)
        if existing is not None:
            _audit_push(session, release_view(existing), pushed_by, created=False)
            session.commit()
            return release_view(existing), False
        row = new_release_row(envelope, staged.size, pushed_by, utcnow())
        session.add(row)
        _audit_push(session, release_view(row), pushed_by, created=True)
        try:
            if sbom is not None:
                attach_sbom(session, row, sbom)
            # The vulnerability gate: refuses (onPush: refuse) or marks, audited.
            marked = [b.describe() for b in gate_push(session, row, utcnow())]
            if marked:
                ref = f"{row.name}@{row.version}"
                record_audit(session, pushed_by, "release.vulnerable", ref, advisories=marked)
            session.commit()
        except IntegrityError:
            session.rollback()  # a concurrent push of the same name and version
            existing = check_envelope(session, envelope)
            if existing is None:
                raise
            _audit_push(session, release_view(existing), pushed_by, created=False)
            session.commit()
            return release_view(existing), False
        return release_view(row).model_copy(update={"blocked_by": marked}), True


@router.post(
    "/releases",
    response_model=ReleaseView,
    status_code=201,
    openapi_extra=audited("release.push"),
    responses={200: {"description": "already pushed with these bytes (idempotent)"}},
)
async def push_release(
    request: Request, response: Response, operator: OperatorDep, state: StateDep
) -> ReleaseView:
    """Upload a signed release archive (the body) with its envelope (a header).

    Everything that can be refused without the bytes (malformed envelope,
    untrusted key, bad signature, version conflict) is refused before the
    body is read; the rest once it has streamed to disk and been hashed.
    """
    store = _store(state)
    envelope = parse_signature_header(request.headers.get(SIGNATURE_HEADER))
    existing = await run_in_threadpool(_precheck, state, envelope)
    if existing is not None and store.has(existing.digest):
        await run_in_threadpool(_audit_unchanged_push, state, existing, operator)
        response.status_code = 200
        return existing
    try:
        staged = await store.receive(request.stream(), max_bytes=MAX_RELEASE_BYTES)
    except ClientDisconnect:
        event(log, "release.upload_aborted", logging.WARNING, name=envelope.name, by=operator)
        raise ReleaseRejectedError("upload_aborted", "the client went away", status=400) from None
    try:
        view, created = await run_in_threadpool(_record, state, store, staged, envelope, operator)
    except ReleaseRejectedError as exc:
        event(
            log,
            "release.refused",
            logging.WARNING,
            name=envelope.name,
            version=str(envelope.version),
            reason=exc.code,
            by=operator,
        )
        raise
    finally:
        store.discard(staged)
    if created:
        event(
            log,
            "release.pushed",
            name=view.name,
            version=view.version,
            digest=view.digest,
            size=view.size,
            key_id=view.key_id,
            by=operator,
        )
    else:
        response.status_code = 200
    return view


def _list(state: HubState) -> list[ReleaseView]:
    with state.sessions() as session:
        return [release_view(row) for row in list_releases(session)]


@router.get("/releases", response_model=list[ReleaseView])
def releases_list(_op: OperatorDep, state: StateDep) -> list[ReleaseView]:
    return _list(state)


@router.get("/releases/{name}/{version}", response_model=ReleaseView)
def releases_show(name: str, version: str, who: ReaderDep, state: StateDep) -> ReleaseView:
    with state.sessions() as session:
        row = find_release(session, name, version)
        hidden = who.device_id is not None and not (
            row is not None and may_fetch_release(session, who.device_id, name, version)
        )
        if row is None or hidden:
            raise NotFoundError(f"no release {name[:80]!r} version {version[:80]!r}")
        return release_view(row)


@router.get("/releases/{name}/{version}/sbom")
def releases_sbom(name: str, version: str, _op: OperatorDep, state: StateDep) -> dict[str, Any]:
    """The release's CycloneDX SBOM, as signed inside its archive."""
    with state.sessions() as session:
        return release_sbom(session, name, version)


@router.delete(
    "/releases/{name}/{version}",
    response_model=ReleaseView,
    openapi_extra=audited("release.rm", target="{name}@{version}"),
)
def releases_remove(name: str, version: str, operator: OperatorDep, state: StateDep) -> ReleaseView:
    """Remove a release and its archive; 409 while a deployment pins it, a
    device is served it (or was just before) or an active rollout could
    restore it. Audited. Answers the release as it was."""
    store = _store(state)
    with state.sessions() as session:
        row = remove_release(session, name, version)
        view = release_view(row)
        record_audit(
            session, operator, "release.rm", f"{row.name}@{row.version}", digest=row.digest
        )
        session.commit()
        # The row went first: a file without a row is never served, a row
        # without its file would be. A digest names one name and version.
        if find_by_digest(session, view.digest) is None:
            store.remove(view.digest)
            remove_deltas(store, view.digest)  # of it and to it: a cache of what is gone
    event(log, "release.removed", name=view.name, version=view.version, by=operator)
    return view


@router.get("/artifacts/{digest}", response_class=FileResponse)
def artifact_download(digest: str, who: ReaderDep, state: StateDep) -> Response:
    """The archive with this digest. Range requests (`Range: bytes=N-`) answer
    206 with the rest, so an interrupted download resumes where it stopped.
    With offload, a device gets a 307 to nginx instead, once authorised."""
    check_digest(digest)
    store = _store(state)
    with state.sessions() as session:
        row = find_by_digest(session, digest)
        hidden = who.device_id is not None and not may_fetch_artifact(
            session, who.device_id, digest
        )
    # Only pushed releases are served: a blob left by a refused push is not.
    path = store.path_for(digest)
    if row is None or hidden or not path.is_file():
        raise NotFoundError(f"no artifact {digest}")
    if (redirect := _offloaded(state, who, store, path)) is not None:
        return redirect
    return ArtifactResponse(
        path,
        media_type="application/zstd",
        headers={
            # Content-addressed: the bytes behind this URL never change.
            "etag": f'"{digest}"',
            "cache-control": "private, max-age=31536000, immutable",
        },
    )


def answer_offloaded_artifact(state: HubState, peer: DevicePeer, digest: str) -> str:
    """`artifact_download` for a device when the hub offloads downloads, as
    the device hot path (hub/_hot_path.py) answers it: the URL signed for
    nginx. The same checks in one session: the device (known, not revoked,
    this certificate), the release pushed, named by the device's desired
    state, its file present. Blocking: call it in a thread.

    Raises:
        ForbiddenError: unknown or revoked device, or a superseded certificate.
        ReleaseRejectedError: `digest` is not sha256:<64 lowercase hex> (422).
        NotFoundError: no such artifact, or one the device may not fetch.
    """
    offload = state.settings.offload
    assert offload is not None  # the hot path answers only when offloading
    with state.sessions() as session:
        check_certified(session, peer.device_id, peer.serial_hex)
        check_digest(digest)
        store = _store(state)
        known = find_by_digest(session, digest) is not None
        hidden = not may_fetch_artifact(session, peer.device_id, digest)
    path = store.path_for(digest)
    if not known or hidden or not path.is_file():
        raise NotFoundError(f"no artifact {digest}")
    return offload.signed_url("/" + path.relative_to(store.root).as_posix(), utcnow().timestamp())


def _offloaded(state: HubState, who: Reader, store: ArtifactStore, path: Path) -> Response | None:
    """With offload, a device's authorised download as a 307 to nginx; None:
    serve it here (no offload, or an operator: few, and their CLI does not
    follow redirects)."""
    offload = state.settings.offload
    if offload is None or who.device_id is None:
        return None
    uri = "/" + path.relative_to(store.root).as_posix()
    url = offload.signed_url(uri, utcnow().timestamp())
    return RedirectResponse(url, status_code=307, headers={"cache-control": "no-store"})


def _delta_rows(state: HubState, who: Reader, digest: str, base: str) -> bool:
    """True when `who` may fetch `digest` and `base` is a release of the same module."""
    with state.sessions() as session:
        row = find_by_digest(session, digest)
        if row is None:
            return False
        if who.device_id is not None and not may_fetch_artifact(session, who.device_id, digest):
            return False
        base_row = find_by_digest(session, base)
        return base_row is not None and base_row.name == row.name


@router.get("/artifacts/{digest}/delta", response_class=FileResponse)
async def artifact_delta(
    digest: str,
    who: ReaderDep,
    state: StateDep,
    base: Annotated[
        str,
        Query(alias="from", max_length=200, description="the digest of the archive the node has"),
    ],
) -> Response:
    """A delta that rebuilds the archive `digest` from the archive `from`
    (fogline.artifact._delta), made on first request and cached; 404 when
    there is none worth serving (deltas off, too large, not rebuildable,
    not ready in time): the node then fetches the full archive. Authorised
    exactly like the full archive; `from` must be a release of the same
    module. The node checks the rebuilt archive's digest and signature."""
    check_digest(digest)
    if not DIGEST_RE.fullmatch(base):
        raise ReleaseRejectedError(
            "invalid", f"from must be sha256:<64 lowercase hex> (got {base[:80]!r})", field="from"
        )
    store = _store(state)
    allowed = await run_in_threadpool(_delta_rows, state, who, digest, base)
    if not allowed or not store.has(digest) or not store.has(base):
        raise NotFoundError(f"no delta to {digest} from {base}")
    path = await state.deltas.get(store, digest, base)
    if path is None:
        state.metrics.deltas.labels(result="none").inc()
        raise NotFoundError(f"no delta to {digest} from {base}")
    state.metrics.deltas.labels(result="served").inc()
    event(log, "release.delta_served", digest=digest, base=base, device=who.device_id)
    if (redirect := _offloaded(state, who, store, path)) is not None:
        return redirect  # evicted before nginx reads it: a 404, and the node takes the archive
    return ArtifactResponse(
        path,
        media_type="application/zstd",
        headers={"cache-control": "private, max-age=31536000, immutable"},
    )
