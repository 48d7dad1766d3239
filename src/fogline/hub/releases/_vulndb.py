"""The offline vulnerability database: OSV advisories imported from files,
and the advisories that affect pushed and deployed releases.

An import stores each advisory unless the hub already holds a copy with a
newer `modified` (an old zip never rolls the database back), and records
what came in. Matching joins the packages each release's SBOM names
(`release_components`) with the packages advisories name (`vuln_packages`),
both under the ecosystem's normalised name, then applies OSV's version rules
(fogline.vulns.affects) to each candidate: the database narrows, the rules
decide.
"""

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

import fogline.vulns
from fogline.artifact import AGENT_MODULE

from .._desired import release_refs
from .._devices import reported_state
from .._schema import (
    DesiredStateRow,
    DeviceRow,
    ReleaseComponentRow,
    ReleaseRow,
    VulnAdvisoryRow,
    VulnImportRow,
    VulnPackageRow,
)

if TYPE_CHECKING:
    from fogline.vulns import Advisory, ParsedAdvisory

_BATCH: Final = 500
_SUMMARY_CHARS: Final = 500


class ImportView(BaseModel):
    """One import as the API shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    source: str
    imported_at: dt.datetime
    imported_by: str
    advisories: int
    stored: int
    ecosystems: dict[str, int]
    newest_modified: dt.datetime | None


class VulnDbStatus(BaseModel):
    """What the database holds: imports (newest first) and advisories per ecosystem."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    advisories: int
    withdrawn: int
    ecosystems: dict[str, int]
    newest_modified: dt.datetime | None
    last_import: dt.datetime | None
    imports: list[ImportView]


class Finding(BaseModel):
    """An advisory that affects a release, and the devices that have it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    advisory: str
    aliases: list[str]
    summary: str
    score: float | None
    severity: str  # none, low, medium, high, critical, or unknown
    published: dt.datetime | None
    modified: dt.datetime
    release: str  # NAME@VERSION
    package: str  # the package URL the release's SBOM names
    deployed: bool  # named in some device's desired state
    targeted: int  # devices whose desired state names the release
    running: int  # devices that report running it
    devices: list[str]  # names of the devices running or targeted (up to 1000)
    blocked_by: list[str] = []  # the VulnerabilityPolicies that block it


def import_view(row: VulnImportRow) -> ImportView:
    return ImportView(
        id=row.id,
        source=row.source,
        imported_at=row.imported_at,
        imported_by=row.imported_by,
        advisories=row.advisories,
        stored=row.stored,
        ecosystems=dict(row.ecosystems),
        newest_modified=row.newest_modified,
    )


def store_import(
    session: Session, parsed: "Iterable[ParsedAdvisory]", source: str, actor: str, now: dt.datetime
) -> ImportView:
    """Store the advisories of one file in the caller's transaction."""
    record = VulnImportRow(
        source=source[:255],
        imported_at=now,
        imported_by=actor[:64],
        advisories=0,
        stored=0,
        ecosystems={},
        newest_modified=None,
    )
    session.add(record)
    session.flush()
    ecosystems: Counter[str] = Counter()
    batch: list[ParsedAdvisory] = []
    for item in parsed:
        batch.append(item)
        if len(batch) >= _BATCH:
            _store_batch(session, batch, record, ecosystems)
            batch = []
    _store_batch(session, batch, record, ecosystems)
    record.ecosystems = dict(sorted(ecosystems.items()))
    return import_view(record)


def _store_batch(
    session: Session, batch: "list[ParsedAdvisory]", record: VulnImportRow, ecosystems: Counter[str]
) -> None:
    if not batch:
        return
    ids = [item.advisory.id for item in batch]
    held: dict[str, dt.datetime] = dict(
        session.execute(
            select(VulnAdvisoryRow.id, VulnAdvisoryRow.modified).where(VulnAdvisoryRow.id.in_(ids))
        )
        .tuples()
        .all()
    )
    for item in batch:
        advisory = item.advisory
        modified = _aware(advisory.modified)
        record.advisories += 1
        for eco in {a.package.ecosystem for a in advisory.affected if a.package is not None}:
            ecosystems[eco] += 1
        if record.newest_modified is None or modified > record.newest_modified:
            record.newest_modified = modified
        if advisory.id in held and held[advisory.id] >= modified:
            continue  # the hub's copy is as new or newer
        record.stored += 1
        held[advisory.id] = modified
        session.execute(delete(VulnAdvisoryRow).where(VulnAdvisoryRow.id == advisory.id))
        session.add(_advisory_row(advisory, item, record.id))
        session.flush()
        session.add_all(
            VulnPackageRow(advisory_id=advisory.id, ecosystem=eco[:128], name=name[:512])
            for eco, name in sorted(
                {
                    (
                        a.package.ecosystem,
                        fogline.vulns.package_name(a.package.ecosystem, a.package.name),
                    )
                    for a in advisory.affected
                    if a.package is not None
                }
            )
        )


def _advisory_row(advisory: "Advisory", item: "ParsedAdvisory", import_id: int) -> VulnAdvisoryRow:
    return VulnAdvisoryRow(
        id=advisory.id,
        modified=_aware(advisory.modified),
        published=_aware(advisory.published) if advisory.published else None,
        withdrawn=_aware(advisory.withdrawn) if advisory.withdrawn else None,
        summary=(advisory.summary or "")[:_SUMMARY_CHARS],
        score=fogline.vulns.advisory_score(advisory),
        document=advisory.model_dump(mode="json", exclude_none=True),
        import_id=import_id,
    )


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def vulndb_status(session: Session, now: dt.datetime) -> VulnDbStatus:
    """Counts per ecosystem (advisories not withdrawn), and every import, newest first."""
    rows = session.execute(
        select(VulnPackageRow.ecosystem, VulnAdvisoryRow.id, VulnAdvisoryRow.withdrawn).join(
            VulnAdvisoryRow, VulnAdvisoryRow.id == VulnPackageRow.advisory_id
        )
    ).all()
    per_ecosystem: dict[str, set[str]] = defaultdict(set)
    for ecosystem, advisory_id, withdrawn in rows:
        if withdrawn is None or withdrawn > now:
            per_ecosystem[ecosystem].add(advisory_id)
    total = session.execute(select(VulnAdvisoryRow.id, VulnAdvisoryRow.withdrawn)).all()
    withdrawn_count = sum(1 for _, w in total if w is not None and w <= now)
    imports = session.scalars(select(VulnImportRow).order_by(VulnImportRow.id.desc())).all()
    newest = session.scalars(
        select(VulnAdvisoryRow.modified).order_by(VulnAdvisoryRow.modified.desc()).limit(1)
    ).first()
    return VulnDbStatus(
        advisories=len(total) - withdrawn_count,
        withdrawn=withdrawn_count,
        ecosystems={eco: len(ids) for eco, ids in sorted(per_ecosystem.items())},
        newest_modified=newest,
        last_import=imports[0].imported_at if imports else None,
        imports=[import_view(row) for row in imports],
    )


@dataclass(frozen=True, slots=True)
class _Fleet:
    """Which devices target and run each release (NAME@VERSION)."""

    targeted: Mapping[str, list[str]]
    running: Mapping[str, list[str]]


def _fleet(session: Session) -> _Fleet:
    names = dict(
        session.execute(select(DeviceRow.id, DeviceRow.name).where(DeviceRow.revoked_at.is_(None)))
        .tuples()
        .all()
    )
    targeted: dict[str, list[str]] = defaultdict(list)
    for device_id, document in session.execute(
        select(DesiredStateRow.device_id, DesiredStateRow.document)
    ):
        if device_id in names:
            for ref in release_refs(document):
                targeted[f"{ref['name']}@{ref['version']}"].append(names[device_id])
    running: dict[str, list[str]] = defaultdict(list)
    for row in session.scalars(select(DeviceRow).where(DeviceRow.revoked_at.is_(None))):
        reported = reported_state(row.reported)
        modules = reported.modules.modules if reported.modules is not None else {}
        for name, module in modules.items():
            if module.version:
                running[f"{name}@{module.version}"].append(row.name)
        agent_version = (row.facts or {}).get("agent_version")
        if isinstance(agent_version, str) and AGENT_MODULE not in modules:
            running[f"{AGENT_MODULE}@{agent_version}"].append(row.name)
    return _Fleet(targeted, running)


def find_affected(
    session: Session,
    now: dt.datetime,
    *,
    advisory_id: str | None = None,
    deployed_only: bool = True,
    release_ids: Iterable[int] | None = None,
) -> list[Finding]:
    """Every (advisory, release) where the advisory affects a package the
    release's SBOM names, newest advisory first. `deployed_only`: releases
    some device targets or runs; `release_ids`: only those releases."""
    query = (
        select(ReleaseRow, ReleaseComponentRow, VulnAdvisoryRow)
        .join(ReleaseComponentRow, ReleaseComponentRow.release_id == ReleaseRow.id)
        .join(
            VulnPackageRow,
            (VulnPackageRow.ecosystem == ReleaseComponentRow.ecosystem)
            & (VulnPackageRow.name == ReleaseComponentRow.name),
        )
        .join(VulnAdvisoryRow, VulnAdvisoryRow.id == VulnPackageRow.advisory_id)
    )
    if advisory_id is not None:
        query = query.where(VulnAdvisoryRow.id == advisory_id)
    if release_ids is not None:
        query = query.where(ReleaseRow.id.in_(list(release_ids)))
    fleet = _fleet(session)
    parsed: dict[str, Advisory] = {}
    seen: set[tuple[str, str]] = set()
    findings: list[Finding] = []
    for release, component, row in session.execute(query).tuples():
        ref = f"{release.name}@{release.version}"
        if (row.id, ref) in seen:
            continue
        advisory = parsed.get(row.id)
        if advisory is None:
            advisory = parsed[row.id] = fogline.vulns.Advisory.model_validate(row.document)
        if not fogline.vulns.affects(
            advisory, component.ecosystem, component.name, component.version, now
        ):
            continue
        targeted, running = fleet.targeted.get(ref, []), fleet.running.get(ref, [])
        deployed = bool(targeted or running)
        if deployed_only and not deployed:
            continue
        seen.add((row.id, ref))
        findings.append(
            Finding(
                advisory=row.id,
                aliases=list(advisory.aliases),
                summary=row.summary,
                score=row.score,
                severity=fogline.vulns.level_of(row.score) if row.score is not None else "unknown",
                published=row.published,
                modified=row.modified,
                release=ref,
                package=component.purl,
                deployed=deployed,
                targeted=len(targeted),
                running=len(running),
                devices=sorted(set(targeted) | set(running))[:1000],
            )
        )
    findings.sort(key=lambda f: (f.published or f.modified, f.advisory, f.release), reverse=True)
    return findings


def advisory_known(session: Session, advisory_id: str) -> bool:
    return session.get(VulnAdvisoryRow, advisory_id) is not None
