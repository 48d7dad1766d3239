"""The audit trail: who did what to the fleet, from where, and how it ended.

Entries are recorded into the caller's session (`record_audit`) and appended
to the hash chain when that session commits, so an entry commits with the
change it describes, or not at all. The append is the last thing a
transaction does: it locks the chain's head row, numbers and hashes the
entries after the head, and moves the head. Concurrent transactions (threads,
hub replicas) take turns on that lock, so the chain never forks; and since
nothing is locked after it, the head lock closes no deadlock cycle.

Who is asking and from where come from the request's `RequestAudit`, set by
the `AuditTrail` middleware (hub/_audit_trail.py) and filled by the auth
dependencies (`note_actor`); outside a request (the rollout scheduler) the
actor is `hub` and the source empty.
"""

import contextvars
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import event, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction

from fogline.security import at_text, entry_hash

from ._clock import utcnow
from ._db import make_engine
from ._desired import plain
from ._schema import AuditHeadRow, AuditRow

# The hub's own decisions: a wave advancing, a rollout pausing itself.
HUB_ACTOR: Final = "hub"
ANONYMOUS: Final = "anonymous"
MAX_AUDIT_ROWS: Final = 1000
_PENDING: Final = "fogline.audit.pending"


@dataclass(slots=True)
class RequestAudit:
    """What the audit trail knows about the request being served."""

    source: str  # the client's address
    actor: str = ANONYMOUS  # set by the auth dependency once it knows
    recorded: int = 0  # entries committed by the request's own transactions


_REQUEST: Final[contextvars.ContextVar[RequestAudit | None]] = contextvars.ContextVar(
    "fogline_request_audit", default=None
)


def begin_request(audit: RequestAudit) -> contextvars.Token[RequestAudit | None]:
    return _REQUEST.set(audit)


def end_request(token: contextvars.Token[RequestAudit | None]) -> None:
    _REQUEST.reset(token)


def note_actor(actor: str) -> None:
    """The authenticated caller of the current request (for its refusals too).

    The context variable holds the same object in the worker thread a
    dependency runs on, so the middleware sees what is set here.
    """
    current = _REQUEST.get()
    if current is not None:
        current.actor = actor


@dataclass(frozen=True, slots=True)
class _Pending:
    at: dt.datetime
    actor: str
    source: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


def record_audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    *,
    outcome: str = "ok",
    source: str | None = None,
    **detail: Any,
) -> None:
    """Add one entry to the caller's transaction: appended to the chain when
    it commits, dropped when it rolls back. `before`/`after` in the detail
    are the target's state around the change."""
    if source is None:
        request = _REQUEST.get()
        source = request.source if request is not None else ""
    pending: list[_Pending] = session.info.setdefault(_PENDING, [])
    pending.append(
        _Pending(
            at=utcnow(),
            actor=actor[:64],
            source=source[:64],
            action=action[:64],
            target=target[:128],
            outcome=outcome[:16],
            detail=plain(detail),
        )
    )


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending: list[_Pending] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    append_entries(session, pending)
    request = _REQUEST.get()
    if request is not None:
        request.recorded += len(pending)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost: rolled back or closed
        session.info.pop(_PENDING, None)


def append_entries(session: Session, pending: Sequence[_Pending]) -> None:
    """Chain `pending` after the head, in the session's transaction.

    Raises:
        RuntimeError: the head row is missing (the chain was tampered with,
            or the migration did not run): refuse to write unchained entries.
    """
    # The transaction's own changes first: they take their row locks before
    # the head's, so a transaction holding the head waits for nothing more.
    session.flush()
    # The UPDATE comes before the read: it takes the lock, so the head read
    # is the one every other appender waits behind.
    moved = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(seq=AuditHeadRow.seq + len(pending))
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        raise RuntimeError("the audit chain has no head row: refusing to write unchained entries")
    last_seq, prev = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)
    ).one()
    seq = last_seq - len(pending)
    rows = []
    for entry in pending:
        seq += 1
        digest = entry_hash(
            seq=seq,
            at=at_text(entry.at),
            actor=entry.actor,
            source=entry.source,
            action=entry.action,
            target=entry.target,
            outcome=entry.outcome,
            detail=entry.detail,
            prev_hash=prev,
        )
        rows.append(
            AuditRow(
                seq=seq,
                at=entry.at,
                actor=entry.actor,
                source=entry.source,
                action=entry.action,
                target=entry.target,
                outcome=entry.outcome,
                detail=entry.detail,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    session.add_all(rows)
    session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(hash=prev)
        .execution_options(synchronize_session=False)
    )


def record_local_action(db_url: str, action: str, target: str, **detail: Any) -> str | None:
    """Record an action run on the hub's machine against its database
    (`fogline hub backup`, `restore`), as the hub, from `local`. Returns
    None, or why the entry could not be written: the action has happened,
    and the caller says so rather than undo it."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session, session.begin():
            record_audit(session, HUB_ACTOR, action, target, source="local", **detail)
    except (SQLAlchemyError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first_line}"
    finally:
        engine.dispose()
    return None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of `list_audit`; all optional."""

    since: dt.datetime | None = None
    after: int | None = None  # entries with seq > after, oldest first (paging)
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in `*` (`rollout.*`)
    limit: int = MAX_AUDIT_ROWS


def list_audit(session: Session, query: AuditQuery) -> Sequence[AuditRow]:
    """Entries oldest first: with `after`, the first `limit` past it; else the
    newest `limit` that match."""
    limit = max(1, min(query.limit, MAX_AUDIT_ROWS))
    select_rows = select(AuditRow)
    if query.since is not None:
        select_rows = select_rows.where(AuditRow.at >= query.since)
    if query.actor:
        select_rows = select_rows.where(AuditRow.actor == query.actor)
    if query.action:
        if query.action.endswith("*"):
            prefix = query.action[:-1]
            select_rows = select_rows.where(AuditRow.action.startswith(prefix, autoescape=True))
        else:
            select_rows = select_rows.where(AuditRow.action == query.action)
    if query.after is not None:
        select_rows = select_rows.where(AuditRow.seq > query.after)
        return list(session.scalars(select_rows.order_by(AuditRow.seq).limit(limit)).all())
    newest = session.scalars(select_rows.order_by(AuditRow.seq.desc()).limit(limit)).all()
    return list(reversed(newest))


def audit_view(row: AuditRow) -> Mapping[str, Any]:
    """The JSON shape of an entry: every hashed field as hashed, so a client
    can check the chain itself (fogline.security.ChainVerifier)."""
    return {
        "seq": row.seq,
        "at": at_text(row.at),
        "actor": row.actor,
        "source": row.source,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def audit_head(session: Session) -> Mapping[str, Any]:
    """The chain's head: the last entry's seq and hash (seq 0: no entries yet)."""
    row = session.get(AuditHeadRow, 1)
    if row is None:
        raise RuntimeError("the audit chain has no head row")
    return {"seq": row.seq, "hash": row.hash}
