"""The vulnerability gate: which releases the applied VulnerabilityPolicy
manifests block, checked wherever a release could reach a device.

A policy blocks an advisory that affects a release (see `_vulndb`) when the
release's module matches the policy's `modules` patterns (absent: every
module), the policy covers the deployment (its `selector`, if any, overlaps
the deployment's), the advisory is not withdrawn, it has no unexpired
exception in that policy, and its CVSS level is at or above `blockAt` (no
severity at all: `unknownSeverity` decides). Several policies: any one blocks.

The gate runs at `release push` (refuse, or accept and mark, as `onPush`
says; a policy with a selector only marks there), at plan/apply (a
deployment that would roll out a blocked release is refused, located at its
module entry), at rollout resume, and after an import (the findings say
which policies block them). `vulns ls` and an import's answer name, for
each finding, the policies that block it by the same rule as plan/apply: a
policy with a selector only where a deployment it covers names the release.
"""

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

import fogline.vulns
from fogline.manifest import (
    Deployment,
    ManifestError,
    ManifestSource,
    Origin,
    Problem,
    Selector,
    VulnerabilityPolicy,
    load_manifests,
)

from .._desired import parse_deployments
from .._schema import DeploymentRow, ReleaseRow, VulnPolicyRow
from ._errors import ReleaseRejectedError
from ._registry import find_release
from ._vulndb import Finding, find_affected

_SHOWN: Final = 5  # advisories named in a refusal; the rest are counted


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    """A policy and when it was applied (durations in exceptions count from then)."""

    policy: VulnerabilityPolicy
    applied_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Block:
    """One advisory one policy blocks for one release."""

    advisory: str
    severity: str
    score: float | None
    policy: str

    def describe(self) -> str:
        score = f" {self.score}" if self.score is not None else ""
        return f"{self.advisory} ({self.severity}{score})"


def stored_policies(session: Session) -> list[AppliedPolicy]:
    """The applied VulnerabilityPolicy manifests, by name."""
    rows = session.scalars(select(VulnPolicyRow).order_by(VulnPolicyRow.name)).all()
    if not rows:
        return []
    import json

    sources = [ManifestSource(f"policy/{row.name}", json.dumps(row.document)) for row in rows]
    loaded = load_manifests(sources).vulnerability_policies
    at = {row.name: row.applied_at for row in rows}
    return [AppliedPolicy(p, at[p.name]) for p in loaded]


def effective_policies(
    session: Session, incoming: Iterable[VulnerabilityPolicy], now: dt.datetime
) -> list[AppliedPolicy]:
    """The stored policies with those of a request in their place (applied now)."""
    by_name = {p.policy.name: p for p in stored_policies(session)}
    for policy in incoming:
        by_name[policy.name] = AppliedPolicy(policy, now)
    return [by_name[name] for name in sorted(by_name)]


def blocks_for(
    module: str, findings: Iterable[Finding], policies: Sequence[AppliedPolicy], now: dt.datetime
) -> list[Block]:
    """What the policies block among a release's findings (pure)."""
    blocks: list[Block] = []
    for finding in findings:
        for applied in policies:
            policy = applied.policy
            if policy.modules is not None and not any(
                fnmatchcase(module, p) for p in policy.modules
            ):
                continue
            if any(
                e.advisory == finding.advisory and e.expires_at(applied.applied_at) > now
                for e in policy.exceptions
            ):
                continue
            if finding.score is None:
                blocked = policy.unknown_severity == "block"
            else:
                blocked = finding.score >= fogline.vulns.LEVEL_FLOOR[policy.block_at]  # type: ignore[index]
            if blocked:
                blocks.append(Block(finding.advisory, finding.severity, finding.score, policy.name))
                break
    return blocks


def covering(policies: Sequence[AppliedPolicy], selector: Selector) -> list[AppliedPolicy]:
    """The policies that cover a deployment with this selector (fleet-wide
    ones always; see `VulnerabilityPolicy.applies_to`): the gate's one rule."""
    return [p for p in policies if p.policy.applies_to(selector)]


def mark_blocked(
    session: Session,
    findings: Sequence[Finding],
    policies: Sequence[AppliedPolicy],
    now: dt.datetime,
) -> list[Finding]:
    """The findings, each with the policies that block it (`blocked_by`).

    As the gate at plan/apply decides: a fleet-wide policy blocks wherever
    the release is; a policy with a selector only when some stored
    deployment it covers (`covering`) names the release, so a policy for
    `site=berlin` does not claim a release deployed to Paris alone.
    """
    if not policies:
        return [f.model_copy(update={"blocked_by": []}) for f in findings]
    fleet_wide = [p for p in policies if p.policy.selector is None]
    by_release = _covering_by_release(session, policies)
    marked = []
    for finding in findings:
        module = finding.release.rpartition("@")[0]
        applicable = fleet_wide + by_release.get(finding.release, [])
        names = sorted(
            {b.policy for p in applicable for b in blocks_for(module, [finding], [p], now)}
        )
        marked.append(finding.model_copy(update={"blocked_by": names}))
    return marked


def _covering_by_release(
    session: Session, policies: Sequence[AppliedPolicy]
) -> dict[str, list[AppliedPolicy]]:
    """NAME@VERSION -> the policies with a selector that cover a stored
    deployment naming it."""
    scoped = [p for p in policies if p.policy.selector is not None]
    if not scoped:
        return {}
    found: dict[str, dict[str, AppliedPolicy]] = {}
    for deployment in parse_deployments(session.scalars(select(DeploymentRow))):
        cover = covering(scoped, deployment.selector)
        if not cover:
            continue
        for entry in deployment.to_document()["spec"].get("modules") or ():
            name, version = entry.get("name"), entry.get("version")
            if isinstance(name, str) and isinstance(version, str):
                found.setdefault(f"{name}@{version}", {}).update({p.policy.name: p for p in cover})
    return {ref: list(by_name.values()) for ref, by_name in found.items()}


def release_blocks(
    session: Session, release: ReleaseRow, policies: Sequence[AppliedPolicy], now: dt.datetime
) -> list[Block]:
    if not policies:
        return []
    findings = find_affected(session, now, deployed_only=False, release_ids=[release.id])
    return blocks_for(release.name, findings, policies, now)


def refusal(ref: str, blocks: Sequence[Block]) -> str:
    shown = ", ".join(b.describe() for b in blocks[:_SHOWN])
    more = f" and {len(blocks) - _SHOWN} more" if len(blocks) > _SHOWN else ""
    policies = ", ".join(sorted({repr(b.policy) for b in blocks}))
    return (
        f"release {ref} is blocked by VulnerabilityPolicy {policies}: {shown}{more}; "
        "ship a fixed release, or add an exception (advisory, reason, expires) to the policy"
    )


def gate_push(session: Session, release: ReleaseRow, now: dt.datetime) -> list[Block]:
    """Check a release being pushed (its SBOM rows flushed in `session`).

    Returns what blocks it when every blocking policy says `onPush: mark`.

    Raises:
        ReleaseRejectedError: blocked (422 `vulnerable`) by a policy with `onPush: refuse`.
    """
    policies = stored_policies(session)
    blocks = release_blocks(session, release, policies, now)
    # A policy scoped by a selector covers some devices only: at push the
    # release is tied to none yet, so it marks; plan/apply refuses.
    refusing = {
        p.policy.name
        for p in policies
        if p.policy.on_push == "refuse" and p.policy.selector is None
    }
    if any(b.policy in refusing for b in blocks):
        raise ReleaseRejectedError(
            "vulnerable", refusal(f"{release.name}@{release.version}", blocks)
        )
    return blocks


def check_deployments(
    session: Session,
    deployments: Sequence[Deployment],
    policies: Sequence[AppliedPolicy],
    now: dt.datetime,
    written: Mapping[str, Deployment] | None = None,
) -> None:
    """Refuse deployments whose module entries name a release a policy
    covering them blocks (a policy with a selector covers the deployments
    whose selector overlaps it; see `VulnerabilityPolicy.applies_to`).

    `written` (by deployment name) are the deployments as read from the
    operator's files, which place each problem at its module entry when
    `deployments` were re-read after their releases were resolved.

    Raises:
        ManifestError: one Problem per blocked entry, at `spec.modules[i].release`,
            located at the entry's file:line:column (the deployment's start
            when the entry's position is unknown, e.g. a stored deployment).
    """
    if not policies:
        return
    problems: list[Problem] = []
    for deployment in deployments:
        source = (written or {}).get(deployment.name, deployment)
        cover = covering(policies, deployment.selector)
        if not cover:
            continue
        for i, entry in enumerate(deployment.to_document()["spec"].get("modules") or ()):
            problem = _entry_problem(session, deployment.name, i, entry, cover, now)
            if problem is None:
                continue
            origin = _entry_origin(source, i)
            file = origin.file if origin else f"deployment/{deployment.name}"
            line, column = (origin.line, origin.column) if origin else (None, None)
            problems.append(Problem(file, line, column, f"spec.modules[{i}].release", problem))
    if problems:
        raise ManifestError(problems)


def _entry_origin(deployment: Deployment, index: int) -> Origin | None:
    if index < len(deployment.module_origins):
        return deployment.module_origins[index]
    return deployment.origin


def check_rollout_resume(session: Session, deployments: Sequence[str], now: dt.datetime) -> None:
    """A rollout may resume only if its deployments roll out no blocked release.

    Raises:
        ReleaseRejectedError: 409 `vulnerable`, naming the release and the advisories.
    """
    policies = stored_policies(session)
    rows = session.scalars(select(DeploymentRow).where(DeploymentRow.name.in_(deployments)))
    try:
        check_deployments(session, parse_deployments(rows), policies, now)
    except ManifestError as exc:
        reasons = "; ".join(
            f"deployment {p.file.removeprefix('<applied ').rstrip('>')}: {p.path}: {p.reason}"
            for p in exc.problems
        )
        raise ReleaseRejectedError(
            "vulnerable", f"the rollout cannot resume: {reasons}", status=409
        ) from None


def _entry_problem(
    session: Session,
    deployment: str,
    index: int,
    entry: Mapping[str, Any],
    policies: Sequence[AppliedPolicy],
    now: dt.datetime,
) -> str | None:
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return None
    release = find_release(session, name, version)
    if release is None:
        return None
    blocks = release_blocks(session, release, policies, now)
    return refusal(f"{name}@{version}", blocks) if blocks else None
