"""The operator API behind bearer tokens: claims and devices."""

import datetime as dt
import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Response
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogline._duration import parse_duration
from fogline._log import event
from fogline.protocol import (
    API_PREFIX,
    ClaimCreate,
    ClaimCreated,
    ClaimView,
    DesiredView,
    DevicePage,
    DeviceView,
    HealthPoint,
    HealthSeries,
    LabelChange,
)

from .._audit import record_audit
from .._audit_trail import audited
from .._auth import StateDep, actor_of, db_session, require_operator
from .._claims import claim_view, create_claim, list_claims, revoke_claim
from .._clock import utcnow
from .._desired import SYNC_COLUMNS, recompile_device, sync_report, touch_desired
from .._device_labels import effective_labels
from .._devices import (
    change_labels,
    device_view,
    find_device,
    remove_device,
    revoke_device,
)
from .._errors import BadRequestError, ConflictError, NotFoundError
from .._health import epoch_ms, read_series, series_query
from .._inventory import device_page, parse_device_query
from .._people import Principal
from .._schema import DesiredStateRow, DeviceRow
from .._scopes import check_device_in_scope
from .._self_healing import UNQUARANTINE_ACTION, lift_quarantine
from .._state import HubState

log = logging.getLogger("fogline.hub.operator")
router = APIRouter(prefix=API_PREFIX, tags=["operator"])

SessionDep = Annotated[Session, Depends(db_session)]
OperatorDep = Annotated[Principal, Depends(require_operator)]


@router.post(
    "/claims", response_model=ClaimCreated, status_code=201, openapi_extra=audited("claim.create")
)
def claims_create(body: ClaimCreate, op: OperatorDep, session: SessionDep) -> ClaimCreated:
    """Create a claim; its token is answered once and never recorded. Audited."""
    row, token = create_claim(session, body)
    record_audit(
        session,
        actor_of(op),
        "claim.create",
        row.name or row.id,
        claim_id=row.id,
        labels=row.labels,
        names=list(row.names or ()),
        max_uses=row.max_uses,
        expires_at=row.expires_at.isoformat(),
    )
    session.commit()
    event(log, "claim.created", claim_id=row.id, name=row.name, by=op.name, max_uses=row.max_uses)
    return ClaimCreated(claim=claim_view(row, utcnow()), token=token)


@router.get("/claims", response_model=list[ClaimView])
def claims_list(_op: OperatorDep, session: SessionDep) -> list[ClaimView]:
    now = utcnow()
    return [claim_view(row, now) for row in list_claims(session)]


@router.post(
    "/claims/{ref}/revoke",
    response_model=ClaimView,
    openapi_extra=audited("claim.revoke", target="{ref}"),
)
def claims_revoke(ref: str, op: OperatorDep, session: SessionDep) -> ClaimView:
    """Revoke a claim by id or name: no further device enrolls with it. Audited."""
    row = revoke_claim(session, ref)
    record_audit(
        session, actor_of(op), "claim.revoke", row.name or row.id, claim_id=row.id, uses=row.uses
    )
    session.commit()
    event(log, "claim.revoked", claim_id=row.id, by=op.name)
    return claim_view(row, utcnow())


@router.get("/devices", response_model=DevicePage)
def devices_list(
    _op: OperatorDep,
    session: SessionDep,
    state: StateDep,
    selector: Annotated[str | None, Query(description="site=berlin,tier in (gold,silver)")] = None,
    status: Annotated[str | None, Query(description="online, offline or revoked")] = None,
    sync: Annotated[str | None, Query(description="in-sync, pending or error")] = None,
    module: Annotated[str | None, Query(description="NAME or NAME@VERSION reported")] = None,
    health: Annotated[
        str | None, Query(description="ok, warning or critical, or several: warning,critical")
    ] = None,
    version: Annotated[str | None, Query(description="the agent version reported")] = None,
    sort: Annotated[str | None, Query(description="name (default) or last_seen")] = None,
    order: Annotated[str | None, Query(description="asc (default) or desc")] = None,
    limit: Annotated[str | None, Query(description="1 to 1000, default 100")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the page before")] = None,
) -> Response:
    """A page of devices with their sync status, filtered and sorted by the
    database (hub/_inventory.py); `next_cursor` continues after it. Reads are
    not scoped: a scoped role sees the whole fleet. Built for 100,000
    devices: only the page's desired-state columns are read, and the views,
    already validated, are serialised once, not validated again."""
    query = parse_device_query(
        selector=selector,
        status=status,
        sync=sync,
        module=module,
        health=health,
        version=version,
        sort=sort,
        order=order,
        limit=limit,
        cursor=cursor,
    )
    now = utcnow()
    offline_after = state.settings.offline_after_s
    rows, next_cursor = device_page(session, query, now, offline_after)
    ids = [row.id for row in rows]
    sync_rows = session.execute(select(*SYNC_COLUMNS).where(DesiredStateRow.device_id.in_(ids)))
    synced = {row.device_id: row for row in sync_rows}
    views = [
        device_view(row, now, offline_after).model_copy(
            update={"sync": sync_report(synced.get(row.id))}
        )
        for row in rows
    ]
    page = DevicePage.model_construct(devices=views, next_cursor=next_cursor)
    return Response(_DEVICE_PAGE.dump_json(page), media_type="application/json")


_DEVICE_PAGE: Final = TypeAdapter(DevicePage)


@router.get("/devices/{ref}", response_model=DeviceView)
def devices_show(ref: str, _op: OperatorDep, session: SessionDep, state: StateDep) -> DeviceView:
    row = find_device(session, ref)
    view = device_view(row, utcnow(), state.settings.offline_after_s)
    return view.model_copy(update={"sync": sync_report(session.get(DesiredStateRow, row.id))})


@router.get("/devices/{ref}/health", response_model=HealthSeries)
def devices_health(
    ref: str,
    _op: OperatorDep,
    session: SessionDep,
    state: StateDep,
    since: Annotated[str, Query(max_length=32)] = "1h",
    step: Annotated[str | None, Query(max_length=32)] = None,
) -> HealthSeries:
    """The device's health over `since` (e.g. 1h, 7d), oldest point first, in
    buckets of `step` (e.g. 1m; default: about 500 points). Raw samples while
    the window is within their retention and the step finer than a rollup's,
    rollups beyond. An unknown device is 404."""
    try:
        window_s = parse_duration(since)
    except ValueError as exc:
        raise BadRequestError(str(exc), field="since") from exc
    try:
        step_s = None if step is None else parse_duration(step)
        now_ms = epoch_ms(utcnow())
        query = series_query(window_s, step_s, now_ms, state.settings.health)
    except ValueError as exc:
        raise BadRequestError(str(exc), field="step") from exc
    row = find_device(session, ref)
    points = read_series(session, row.id, query, state.settings.health)
    return HealthSeries(
        device_id=row.id,
        name=row.name,
        since=dt.datetime.fromtimestamp(query.since_ms / 1000, dt.UTC),
        step_s=query.step_s,
        points=[HealthPoint.model_validate(point) for point in points],
    )


@router.get("/devices/{ref}/desired", response_model=DesiredView)
def devices_desired(ref: str, _op: OperatorDep, session: SessionDep) -> DesiredView:
    """The desired-state document the hub serves the device now, as compiled
    from the deployments that select it (and its rollout's wave)."""
    row = find_device(session, ref)
    desired = session.get(DesiredStateRow, row.id)
    if desired is None:
        raise NotFoundError(f"device {row.name!r} has no desired state yet")
    return DesiredView(
        device_id=row.id,
        name=row.name,
        revision=desired.revision,
        document=desired.document,
        updated_at=desired.updated_at,
        applied_revision=desired.applied_revision,
    )


@router.patch(
    "/devices/{ref}/labels",
    response_model=DeviceView,
    openapi_extra=audited("device.label", target="{ref}"),
)
def devices_label(
    ref: str, body: LabelChange, op: OperatorDep, session: SessionDep, state: StateDep
) -> DeviceView:
    """Set, remove, or promote (copy from what the device asked for) the labels
    deployments select the device on. Audited."""
    row = relabel_device(session, state, op, ref, body)
    return device_view(row, utcnow(), state.settings.offline_after_s)


def relabel_device(
    session: Session, state: HubState, op: Principal, ref: str, body: LabelChange
) -> DeviceRow:
    """Change a device's labels, audited and committed: the API route's and
    the console's one way to do it.

    Raises:
        NotFoundError: no such device. ForbiddenError: outside `op`'s scope,
        before or after the change. BadRequestError: a label change refused.
    """
    row = find_device(session, ref)
    check_device_in_scope(op, row)
    before = dict(row.labels)
    promoted = change_labels(row, body)
    # Nothing is committed when this refuses: a scoped operator cannot move
    # a device out of its scope (nor relabel one in).
    check_device_in_scope(op, row, labels_after=effective_labels(row))
    changed = recompile_device(session, state.deployments, row)
    record_audit(
        session,
        actor_of(op),
        "device.promote" if body.promote else "device.label",
        row.name,
        device_id=row.id,
        set=dict(body.set),
        remove=list(body.remove),
        promoted=promoted,
        before=before,
        after=dict(row.labels),
    )
    session.commit()
    if changed:
        state.notifier.poke()
    event(
        log,
        "device.labelled",
        device_id=row.id,
        by=op.name,
        set=body.set,
        remove=body.remove,
        promote=body.promote,
    )
    return row


@router.post(
    "/devices/{ref}/unquarantine",
    response_model=DeviceView,
    openapi_extra=audited(UNQUARANTINE_ACTION, target="{ref}"),
)
def devices_unquarantine(
    ref: str, op: OperatorDep, session: SessionDep, state: StateDep
) -> DeviceView:
    """Lift the quarantine the hub put on a device (hub/_self_healing.py): the
    `fogline.dev/quarantined` label goes, and crash loops before now are not
    counted again. Audited."""
    row = find_device(session, ref)
    check_device_in_scope(op, row)
    before = effective_labels(row)
    if not lift_quarantine(session, row, state.deployments):
        raise ConflictError(f"device {row.name!r} is not quarantined")
    record_audit(
        session,
        actor_of(op),
        UNQUARANTINE_ACTION,
        row.name,
        device_id=row.id,
        before=before,
        after=effective_labels(row),
    )
    session.commit()
    state.notifier.poke()
    return device_view(row, utcnow(), state.settings.offline_after_s)


@router.post(
    "/devices/{ref}/revoke",
    response_model=DeviceView,
    openapi_extra=audited("device.revoke", target="{ref}"),
)
def devices_revoke(ref: str, op: OperatorDep, session: SessionDep, state: StateDep) -> DeviceView:
    """Revoke a device: its certificate is refused from its next request on,
    and its key at enrollment, forever. Audited."""
    row = find_device(session, ref)
    revoke_device(session, row)
    touch_desired(session, row.id)  # its long-poll wakes and is refused
    record_audit(session, actor_of(op), "device.revoke", row.name, device_id=row.id)
    session.commit()
    state.notifier.poke()
    event(log, "device.revoked", device_id=row.id, by=op.name)
    return device_view(row, utcnow(), state.settings.offline_after_s)


@router.delete(
    "/devices/{ref}", response_model=DeviceView, openapi_extra=audited("device.rm", target="{ref}")
)
def devices_remove(
    ref: str,
    op: OperatorDep,
    session: SessionDep,
    state: StateDep,
    force: Annotated[bool, Query(description="Revoke an active device first.")] = False,
) -> DeviceView:
    """Remove a revoked device (409 for an active one unless `force`, which
    revokes it first): its name is free again, its key stays refused. Audited.
    Answers the device as it was last."""
    row = find_device(session, ref)
    was_revoked = row.revoked_at is not None
    remove_device(session, row, force=force)
    view = device_view(row, utcnow(), state.settings.offline_after_s)
    record_audit(
        session,
        actor_of(op),
        "device.rm",
        row.name,
        device_id=row.id,
        forced=not was_revoked,
        key_sha256=row.key_sha256,
    )
    session.commit()
    event(log, "device.removed", device_id=row.id, name=row.name, by=op.name)
    return view
