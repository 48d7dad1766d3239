"""What an apply writes besides deployments: release keys, vulnerability
policies and provisioning claims, each reported as create, update or
unchanged for the plan's answer and the audit log. The caller (_manifests.py)
holds the transaction.
"""

import base64

from sqlalchemy.orm import Session

from fogline.manifest import ManifestSet, canonical_json

from ._audit import record_audit
from ._claims import add_claim, find_claim_by_name
from ._clock import utcnow
from ._schema import ReleaseKeyRow, VulnPolicyRow


def apply_release_keys(session: Session, manifests: ManifestSet) -> dict[str, str]:
    """Write the ReleaseKeys; returns what happened to each: create, update or unchanged."""
    actions: dict[str, str] = {}
    now = utcnow()
    for key in manifests.release_keys:
        encoded = base64.b64encode(key.public_key).decode()
        row = session.get(ReleaseKeyRow, key.name)
        modules = list(key.modules) if key.modules is not None else None
        if row is None:
            session.add(
                ReleaseKeyRow(name=key.name, public_key=encoded, applied_at=now, modules=modules)
            )
            actions[key.name] = "create"
        elif (row.public_key, row.modules) != (encoded, modules):
            row.public_key, row.applied_at, row.modules = encoded, now, modules
            actions[key.name] = "update"
        else:
            actions[key.name] = "unchanged"
    return actions


def apply_policies(session: Session, manifests: ManifestSet, applied_by: str) -> dict[str, str]:
    """Write the VulnerabilityPolicies; each change is audited with its
    exceptions (advisory, reason, expiry) before and after."""
    actions: dict[str, str] = {}
    now = utcnow()
    for policy in manifests.vulnerability_policies:
        document = policy.to_document()
        row = session.get(VulnPolicyRow, policy.name)
        before = row.document if row is not None else None
        if row is None:
            session.add(
                VulnPolicyRow(
                    name=policy.name, document=document, applied_at=now, applied_by=applied_by
                )
            )
            actions[policy.name] = "create"
        elif canonical_json(row.document) != canonical_json(document):
            row.document, row.applied_at, row.applied_by = document, now, applied_by
            actions[policy.name] = "update"
        else:
            actions[policy.name] = "unchanged"
            continue
        record_audit(
            session,
            applied_by,
            "vulnerability-policy.apply",
            policy.name,
            exceptions=document["spec"]["exceptions"],
            before=before,
            after=document,
        )
    return actions


def apply_claims(session: Session, manifests: ManifestSet) -> tuple[dict[str, str], dict[str, str]]:
    """Write the ProvisioningClaims; returns new claims' tokens and what happened to each."""
    tokens: dict[str, str] = {}
    actions: dict[str, str] = {}
    now = utcnow()
    for claim in manifests.claims:
        row = find_claim_by_name(session, claim.name)
        expires_at = claim.expires_at(now)
        if row is None:
            _row, tokens[claim.name] = add_claim(
                session,
                name=claim.name,
                labels=claim.labels,
                names=claim.names,
                max_uses=claim.max_uses,
                now=now,
                expires_at=expires_at,
            )
            actions[claim.name] = "create"
        else:
            wanted = (dict(claim.labels), list(claim.names), claim.max_uses, expires_at)
            # `expires: 7d` moves with every apply: that is an update too.
            same = (row.labels, list(row.names or ()), row.max_uses, row.expires_at) == wanted
            row.labels, row.names = dict(claim.labels), list(claim.names)
            row.max_uses, row.expires_at = claim.max_uses, expires_at
            actions[claim.name] = "unchanged" if same else "update"
    return tokens, actions
