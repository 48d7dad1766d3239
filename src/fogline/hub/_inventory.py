"""Device inventory at scale: `GET /v1/devices` as keyset pages, filtered and
sorted by the database.

A page holds at most `limit` devices (default 100, at most 1000) and a
`next_cursor` that continues after its last device. The cursor is the
position of that device in the sort order (its sort key and its id), not an
offset: a device enrolled or removed while an operator pages through the
fleet neither repeats nor hides another. Sorting by name (the default) is
stable for every device; sorting by `last_seen` moves a device that reports
while the pages are read, so it may show twice or not at all.

Filters, all of which must hold:

    selector  a one-line label selector (fogline.manifest.parse_selector),
              answered from device_labels (hub/_label_index.py)
    status    online | offline | revoked
    sync      in-sync | pending | error (`failed` is read as error)
    module    NAME (reported, any version) or NAME@VERSION
    health    ok | warning | critical, or several joined by commas
              (`warning,critical`): the worst of the device's active alerts,
              which the alert pass keeps in `devices.health` (hub/_alerts.py)
    version   the agent version the device last reported (its facts)

Every parameter is checked here; a wrong one is a BadRequestError (422)
naming it.
"""

import base64
import binascii
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast, get_args

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    UnaryExpression,
    and_,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from fogline.manifest import Operator, Requirement, Selector, SelectorSyntaxError, parse_selector
from fogline.protocol import DeviceStatus, SyncStatus

from ._alerts import HEALTH_LEVELS
from ._errors import BadRequestError
from ._schema import DesiredStateRow, DeviceLabelRow, DeviceRow

DEFAULT_PAGE_LIMIT: Final = 100
MAX_PAGE_LIMIT: Final = 1000
MAX_CURSOR_CHARS: Final = 512
MAX_NAME_PREFIX: Final = 128
SortKey = Literal["name", "last_seen"]
SORT_KEYS: Final = cast(tuple[SortKey, ...], get_args(SortKey))
_STATUSES: Final = cast(tuple[DeviceStatus, ...], get_args(DeviceStatus))
_SYNCS: Final = cast(tuple[SyncStatus, ...], get_args(SyncStatus))
_SYNC_ALIASES: Final[dict[str, SyncStatus]] = {"failed": "error"}
_MODULE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", re.ASCII)
_VERSION_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,127}$", re.ASCII)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last device's sort key and id."""

    sort: SortKey
    descending: bool
    key: str | None  # the name, or last_seen in ISO form (None: never seen)
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """One page request, checked."""

    selector: Selector = field(default_factory=Selector)
    status: DeviceStatus | None = None
    sync: SyncStatus | None = None
    module: str | None = None
    module_version: str | None = None
    name_prefix: str | None = None
    health: frozenset[str] = frozenset()
    agent_version: str | None = None
    sort: SortKey = "name"
    descending: bool = False
    limit: int = DEFAULT_PAGE_LIMIT
    after: Position | None = None


def _bad(param: str, reason: str) -> BadRequestError:
    """The message names the parameter too: the CLI shows only the message."""
    return BadRequestError(f"{param}: {reason}", field=param)


def encode_cursor(position: Position) -> str:
    """Opaque to clients: base64url of the position, no padding."""
    raw = orjson.dumps([1, position.sort, position.descending, position.key, position.device_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str) -> Position:
    """Raises: BadRequestError naming `cursor`."""
    bad = _bad("cursor", "is not a cursor this hub gave out (pass next_cursor unchanged)")
    if len(text) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, sort, descending, key, device_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise bad from None
    if (
        version != 1
        or sort not in SORT_KEYS
        or not isinstance(descending, bool)
        or not (key is None or isinstance(key, str))
        or not isinstance(device_id, str)
        or (sort == "name" and key is None)
    ):
        raise bad
    if sort == "last_seen" and key is not None:
        try:
            dt.datetime.fromisoformat(key)
        except ValueError:
            raise bad from None
    return Position(sort, descending, key, device_id)


_T = TypeVar("_T", bound=str)


def _one_of(value: str, allowed: Sequence[_T], param: str) -> _T:
    if value not in allowed:
        raise _bad(param, f"must be one of {', '.join(allowed)} (got {value[:40]!r})")
    return cast(_T, value)


def parse_device_query(
    *,
    selector: str | None = None,
    status: str | None = None,
    sync: str | None = None,
    module: str | None = None,
    health: str | None = None,
    version: str | None = None,
    sort: str | None = None,
    order: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
    name: str | None = None,
) -> DeviceQuery:
    """Check the query parameters of `GET /v1/devices`.

    Raises:
        BadRequestError: one parameter is wrong; its `field` names it.
    """
    try:
        parsed_selector = parse_selector(selector or "")
    except SelectorSyntaxError as exc:
        raise _bad("selector", exc.reason) from None
    sort_key = _one_of(sort or "name", SORT_KEYS, "sort")
    descending = _one_of(order or "asc", ("asc", "desc"), "order") == "desc"
    page_limit = DEFAULT_PAGE_LIMIT
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE_LIMIT:
            raise _bad(
                "limit", f"must be a whole number from 1 to {MAX_PAGE_LIMIT} (got {limit[:20]!r})"
            )
        page_limit = int(limit)
    module_name = module_version = None
    if module is not None:
        module_name, at, wanted = module.partition("@")
        if not _MODULE_RE.match(module_name) or (at and not _VERSION_RE.match(wanted)):
            raise _bad("module", f"must be NAME or NAME@VERSION of a module (got {module[:80]!r})")
        module_version = wanted if at else None
    after = None
    if cursor is not None:
        after = _decode_cursor(cursor)
        if (after.sort, after.descending) != (sort_key, descending):
            raise _bad(
                "cursor",
                f"was given for sort={after.sort}, order={'desc' if after.descending else 'asc'}; "
                "ask again with the same sort and order, or without a cursor",
            )
    if name is not None and len(name) > MAX_NAME_PREFIX:
        raise _bad("name", f"at most {MAX_NAME_PREFIX} characters (got {len(name)})")
    levels: frozenset[str] = frozenset()
    if health is not None:
        levels = frozenset(
            _one_of(level.strip(), HEALTH_LEVELS, "health") for level in health[:64].split(",")
        )
    if version is not None and not _VERSION_RE.match(version):
        raise _bad("version", f"must be an agent version, e.g. 1.4.0 (got {version[:80]!r})")
    sync_status = None
    if sync is not None:
        sync_status = _one_of(_SYNC_ALIASES.get(sync, sync), _SYNCS, "sync")
    return DeviceQuery(
        selector=parsed_selector,
        status=_one_of(status, _STATUSES, "status") if status is not None else None,
        sync=sync_status,
        module=module_name,
        module_version=module_version,
        name_prefix=name or None,
        health=levels,
        agent_version=version,
        sort=sort_key,
        descending=descending,
        limit=page_limit,
        after=after,
    )


def _requirement_clause(req: Requirement) -> ColumnElement[bool]:
    # Correlated EXISTS on the (device_id, key) primary key, or a semi-join
    # through ix_device_labels_key_value: the planner picks per query.
    has_key = and_(DeviceLabelRow.device_id == DeviceRow.id, DeviceLabelRow.key == req.key)
    if req.operator is Operator.EXISTS:
        return exists().where(has_key)
    if req.operator is Operator.DOES_NOT_EXIST:
        return not_(exists().where(has_key))
    in_values = exists().where(has_key, DeviceLabelRow.value.in_(sorted(req.values)))
    # NotIn: a device without the label is "not in", as in Kubernetes.
    return in_values if req.operator is Operator.IN else not_(in_values)


def _status_clause(status: DeviceStatus, cutoff: dt.datetime) -> ColumnElement[bool]:
    if status == "revoked":
        return DeviceRow.revoked_at.is_not(None)
    if status == "online":
        return and_(DeviceRow.revoked_at.is_(None), DeviceRow.last_seen >= cutoff)
    return and_(
        DeviceRow.revoked_at.is_(None),
        or_(DeviceRow.last_seen.is_(None), DeviceRow.last_seen < cutoff),
    )


def _sync_clause(sync: SyncStatus) -> ColumnElement[bool]:
    # The same rules as hub/_desired.sync_report, in SQL.
    applied = DesiredStateRow.applied_revision == DesiredStateRow.revision
    if sync == "in-sync":
        return and_(applied, DesiredStateRow.applied_ok == true())
    if sync == "error":
        return and_(applied, DesiredStateRow.applied_ok == false())
    return or_(
        DesiredStateRow.device_id.is_(None),
        DesiredStateRow.applied_revision.is_(None),
        DesiredStateRow.applied_revision != DesiredStateRow.revision,
    )


def _module_clause(name: str, version: str | None) -> ColumnElement[bool]:
    # The stored report (ReportedState): reported.modules.modules[NAME].
    path = ("modules", "modules", name)
    reported = cast(JSON.Comparator[Any], DeviceRow.reported)
    clause: ColumnElement[bool]
    if version is None:
        clause = reported[(*path, "state")].as_string().is_not(None)
    else:
        clause = reported[(*path, "version")].as_string() == version
    return clause


def _after_clause(after: Position) -> ColumnElement[bool]:
    """Devices after `after` in the order `_order_by` gives."""
    if after.sort == "name":
        assert after.key is not None
        if after.descending:
            return or_(
                DeviceRow.name < after.key,
                and_(DeviceRow.name == after.key, DeviceRow.id < after.device_id),
            )
        return or_(
            DeviceRow.name > after.key,
            and_(DeviceRow.name == after.key, DeviceRow.id > after.device_id),
        )
    # last_seen: never-seen devices (NULL) come first ascending, last descending.
    seen = DeviceRow.last_seen
    if after.key is None:
        if after.descending:
            return and_(seen.is_(None), DeviceRow.id < after.device_id)
        return or_(seen.is_not(None), and_(seen.is_(None), DeviceRow.id > after.device_id))
    at = dt.datetime.fromisoformat(after.key)
    if after.descending:
        return or_(seen < at, and_(seen == at, DeviceRow.id < after.device_id), seen.is_(None))
    return or_(seen > at, and_(seen == at, DeviceRow.id > after.device_id))


def _order_by(query: DeviceQuery) -> list[UnaryExpression[Any]]:
    if query.sort == "name":
        if query.descending:
            return [DeviceRow.name.desc(), DeviceRow.id.desc()]
        return [DeviceRow.name.asc(), DeviceRow.id.asc()]
    if query.descending:
        return [DeviceRow.last_seen.desc().nulls_last(), DeviceRow.id.desc()]
    return [DeviceRow.last_seen.asc().nulls_first(), DeviceRow.id.asc()]


def _position(row: DeviceRow, query: DeviceQuery) -> Position:
    if query.sort == "name":
        key: str | None = row.name
    else:
        key = row.last_seen.isoformat() if row.last_seen is not None else None
    return Position(query.sort, query.descending, key, row.id)


# A selector's positive term (key=value, key in (...)) matched by fewer
# devices than this drives the query from ix_device_labels_key_value and
# sorts what it finds; a broader one leaves the planner to walk the sort
# order and test each device, which fills a page after a few probes. Left to
# itself SQLite always walks the sort order: ~1 s at 100,000 devices for a
# selector that matches none.
DRIVING_CANDIDATES: Final = 5000


def _candidates(requirement: Requirement) -> Select[tuple[str]]:
    return select(DeviceLabelRow.device_id).where(
        DeviceLabelRow.key == requirement.key,
        DeviceLabelRow.value.in_(sorted(requirement.values)),
    )


def driving_requirement(session: Session, selector: Selector) -> Requirement | None:
    """The selector's most selective positive term, when it matches fewer than
    DRIVING_CANDIDATES devices (each count stops there), else None."""
    best: tuple[int, Requirement] | None = None
    for requirement in selector.requirements():
        if requirement.operator is not Operator.IN:
            continue
        bounded = _candidates(requirement).limit(DRIVING_CANDIDATES).subquery()
        count = session.scalar(select(func.count()).select_from(bounded)) or 0
        if count < DRIVING_CANDIDATES and (best is None or count < best[0]):
            best = (count, requirement)
    return best[1] if best is not None else None


def device_page_select(
    query: DeviceQuery,
    now: dt.datetime,
    offline_after_s: float,
    driver: Requirement | None = None,
) -> Select[tuple[DeviceRow]]:
    """The SELECT of one page, one row more than `limit` (is there a next page?)."""
    statement = select(DeviceRow)
    if driver is not None:
        statement = statement.where(DeviceRow.id.in_(_candidates(driver)))
    if query.sync is not None:
        statement = statement.outerjoin(
            DesiredStateRow, DesiredStateRow.device_id == DeviceRow.id
        ).where(_sync_clause(query.sync))
    if query.status is not None:
        cutoff = now - dt.timedelta(seconds=offline_after_s)
        statement = statement.where(_status_clause(query.status, cutoff))
    for req in query.selector.requirements():
        if req != driver:
            statement = statement.where(_requirement_clause(req))
    if query.name_prefix is not None:
        # A prefix walks the unique index on name; LIKE's wildcards escaped.
        statement = statement.where(DeviceRow.name.startswith(query.name_prefix, autoescape=True))
    if query.module is not None:
        statement = statement.where(_module_clause(query.module, query.module_version))
    if query.health:
        # ix_devices_health_name_id: in name order within each level.
        statement = statement.where(DeviceRow.health.in_(sorted(query.health)))
    if query.agent_version is not None:
        # ix_devices_agent_version_name_id, as health's.
        statement = statement.where(DeviceRow.agent_version == query.agent_version)
    if query.after is not None:
        statement = statement.where(_after_clause(query.after))
    return statement.order_by(*_order_by(query)).limit(query.limit + 1)


def device_page(
    session: Session, query: DeviceQuery, now: dt.datetime, offline_after_s: float
) -> tuple[Sequence[DeviceRow], str | None]:
    """One page of devices and the cursor of the next (None: this is the last)."""
    driver = driving_requirement(session, query.selector)
    statement = device_page_select(query, now, offline_after_s, driver)
    rows = session.scalars(statement).all()
    if len(rows) <= query.limit:
        return rows, None
    page = rows[: query.limit]
    return page, encode_cursor(_position(page[-1], query))


def count_devices_by_sync(session: Session) -> dict[str, int]:
    """Devices not revoked, by sync status (the rules of `sync=` above)."""
    counts: dict[str, int] = {}
    for sync in _SYNCS:
        statement = (
            select(func.count())
            .select_from(DeviceRow)
            .outerjoin(DesiredStateRow, DesiredStateRow.device_id == DeviceRow.id)
            .where(DeviceRow.revoked_at.is_(None), _sync_clause(sync))
        )
        counts[sync] = int(session.scalar(statement) or 0)
    return counts
