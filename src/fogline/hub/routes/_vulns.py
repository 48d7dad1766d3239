"""The offline vulnerability database and what it finds in the fleet.

    POST /v1/vulndb/imports?source=NAME   release-key  body: an OSV zip (application/zip)
    GET  /v1/vulndb                       read         imports, advisories per ecosystem, age
    GET  /v1/vulns?advisory=ID&all=true   read         advisories affecting releases, with
                                                       the devices that target or run them
    GET  /v1/vulnpolicies                 read         applied VulnerabilityPolicy documents
    DELETE /v1/vulnpolicies/{name}        release-key  remove one (audited, with its exceptions)

An import is all or nothing: the first malformed file refuses it (422,
naming the file and the reason). Its answer lists what the new data finds
in deployed releases, so an import is also a scan.
"""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import fogline.vulns
from fogline._log import event
from fogline.protocol import API_PREFIX
from fogline.vulns import MAX_IMPORT_BYTES, VulnError

from .._audit import record_audit
from .._audit_trail import audited
from .._auth import SessionEndingRoute, StateDep, actor_of, db_session, require_operator
from .._clock import utcnow
from .._errors import BadRequestError, NotFoundError
from .._people import Principal
from .._schema import VulnPolicyRow
from .._scopes import check_unscoped
from .._state import HubState
from ..releases import (
    Finding,
    ImportView,
    VulnDbStatus,
    advisory_known,
    find_affected,
    mark_blocked,
    store_import,
    stored_policies,
    vulndb_status,
)
from ._release import OperatorDep as UploaderDep

log = logging.getLogger("fogline.hub.vulns")
router = APIRouter(prefix=API_PREFIX, tags=["vulnerabilities"], route_class=SessionEndingRoute)
SessionDep = Annotated[Session, Depends(db_session)]
ReaderDep = Annotated[Principal, Depends(require_operator)]
_SOURCE_CHARS = 255


class ImportResult(BaseModel):
    """An import and what the database now finds in deployed releases."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    imported: ImportView
    findings: list[Finding]


def _import(state: HubState, data: bytes, source: str, actor: str) -> ImportResult:
    now = utcnow()
    with state.transaction() as session:
        try:
            view = store_import(
                session, fogline.vulns.read_osv_zip(data, source), source, actor, now
            )
        except VulnError as exc:
            raise BadRequestError(str(exc), field="body") from exc
        record_audit(
            session,
            actor,
            "vulndb.import",
            source,
            advisories=view.advisories,
            stored=view.stored,
            ecosystems=view.ecosystems,
        )
    with state.sessions() as session:
        # The gate runs on the new data: which deployed releases it now blocks.
        findings = mark_blocked(session, find_affected(session, now), stored_policies(session), now)
    return ImportResult(imported=view, findings=findings)


@router.post(
    "/vulndb/imports",
    response_model=ImportResult,
    status_code=201,
    openapi_extra=audited("vulndb.import"),
)
async def vulndb_import(
    request: Request,
    operator: UploaderDep,
    state: StateDep,
    source: Annotated[str, Query(min_length=1, max_length=_SOURCE_CHARS)],
) -> ImportResult:
    """Import an OSV zip (one per ecosystem, as OSV publishes). Audited."""
    data = await request.body()  # bounded by BodyLimit (MAX_IMPORT_BYTES)
    if len(data) > MAX_IMPORT_BYTES:
        raise BadRequestError(f"larger than {MAX_IMPORT_BYTES} bytes", field="body")
    result = await run_in_threadpool(_import, state, data, source, operator)
    event(
        log,
        "vulndb.imported",
        source=source,
        advisories=result.imported.advisories,
        stored=result.imported.stored,
        findings=len(result.findings),
        by=operator,
    )
    return result


@router.get("/vulndb", response_model=VulnDbStatus)
def vulndb_show(_op: ReaderDep, session: SessionDep) -> VulnDbStatus:
    """What was imported, advisories per ecosystem, and how old the data is."""
    return vulndb_status(session, utcnow())


@router.get("/vulns", response_model=list[Finding])
def vulns_list(
    _op: ReaderDep,
    session: SessionDep,
    advisory: Annotated[str | None, Query(max_length=128)] = None,
    all_releases: Annotated[bool, Query(alias="all")] = False,
) -> list[Finding]:
    """Advisories affecting deployed releases (`all=true`: every pushed
    release), newest first, each with the devices that target or run it and
    the VulnerabilityPolicies that block it (as plan/apply would)."""
    if advisory is not None and not advisory_known(session, advisory):
        raise NotFoundError(f"no advisory {advisory!r} in the vulnerability database")
    now = utcnow()
    found = find_affected(session, now, advisory_id=advisory, deployed_only=not all_releases)
    return mark_blocked(session, found, stored_policies(session), now)


@router.get("/vulnpolicies")
def vulnpolicies_list(_op: ReaderDep, session: SessionDep) -> list[dict[str, Any]]:
    """Every applied VulnerabilityPolicy, as its manifest document, by name."""
    rows = session.scalars(select(VulnPolicyRow).order_by(VulnPolicyRow.name)).all()
    return [
        {**row.document, "applied_at": row.applied_at.isoformat(), "applied_by": row.applied_by}
        for row in rows
    ]


@router.delete(
    "/vulnpolicies/{name}",
    openapi_extra=audited("vulnerability-policy.delete", target="vulnerabilitypolicy/{name}"),
)
def vulnpolicies_delete(name: str, op: ReaderDep, session: SessionDep) -> dict[str, Any]:
    """Remove a VulnerabilityPolicy: what it blocked is no longer blocked. Audited."""
    check_unscoped(op, f"VulnerabilityPolicy {name[:63]!r}")
    row = session.get(VulnPolicyRow, name[:63])
    if row is None:
        raise NotFoundError(f"no VulnerabilityPolicy {name[:63]!r}")
    document = dict(row.document)
    session.delete(row)
    record_audit(
        session,
        actor_of(op),
        "vulnerability-policy.delete",
        f"vulnerabilitypolicy/{row.name}",
        before=document,
        exceptions=document.get("spec", {}).get("exceptions", []),
    )
    session.commit()
    event(log, "vulnerability-policy.deleted", name=row.name, by=op.name)
    return document
