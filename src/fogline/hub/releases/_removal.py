"""Removing a pushed release, and release keys, only when nothing needs them.

A release is in use while an applied deployment pins it, a device is served
a document naming it (or the document before, which it may be rolling back
to), or an active rollout could restore a deployment that pins it. A release
key is in use while an applied deployment pins a release it signed: nodes
that install or repair that release verify it with the key.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from .._desired import release_refs
from .._errors import ConflictError, NotFoundError
from .._schema import DeploymentRow, DesiredStateRow, ReleaseKeyRow, ReleaseRow, RolloutRow
from ._registry import find_release, release_key_id

_SHOWN: Final = 5  # names listed in a refusal; the rest are counted


def _entries(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    spec = (document or {}).get("spec")
    modules = spec.get("modules") if isinstance(spec, Mapping) else None
    return [entry for entry in modules or () if isinstance(entry, Mapping)]


def _pins(entry: Mapping[str, Any], release: ReleaseRow) -> bool:
    if entry.get("name") != release.name:
        return False
    return (
        entry.get("digest") == release.digest
        or entry.get("version") == release.version
        or (entry.get("release") in (f"{release.name}@{release.version}", release.digest))
    )


def _listed(kind: str, names: Iterable[str]) -> str:
    unique = sorted(set(names))
    shown = ", ".join(unique[:_SHOWN])
    more = f" and {len(unique) - _SHOWN} more" if len(unique) > _SHOWN else ""
    return f"{kind} {shown}{more}"


def release_users(session: Session, release: ReleaseRow) -> list[str]:
    """What still needs `release`, in words (empty: it may go)."""
    users: list[str] = []
    deployments = [
        row.name
        for row in session.scalars(select(DeploymentRow))
        if any(_pins(entry, release) for entry in _entries(row.document))
    ]
    if deployments:
        users.append(_listed("deployment", deployments))
    served = 0
    for document, previous in session.execute(
        select(DesiredStateRow.document, DesiredStateRow.previous_releases)
    ):
        refs = [*release_refs(document), *(previous or ())]
        served += any(ref.get("digest") == release.digest for ref in refs)
    if served:
        users.append(f"{served} device(s) served it now or just before")
    rollouts = [
        row.id
        for row in session.scalars(
            select(RolloutRow).where(RolloutRow.state.in_(("running", "paused")))
        )
        if any(
            _pins(entry, release)
            for document in (row.previous_deployments or {}).values()
            for entry in _entries(document)
        )
    ]
    if rollouts:
        users.append(_listed("active rollout", rollouts) + " (its rollback restores it)")
    return users


def remove_release(session: Session, name: str, version: str) -> ReleaseRow:
    """Delete the release's row (the caller commits, then drops the file).

    Raises:
        NotFoundError: no such release.
        ConflictError: something still needs it; the message says what.
    """
    row = find_release(session, name, version)
    if row is None:
        raise NotFoundError(f"no release {name[:80]!r} version {version[:80]!r}")
    users = release_users(session, row)
    if users:
        raise ConflictError(
            f"{name}@{version} is in use by {'; '.join(users)}: point the deployments at "
            "another release (and let the rollout finish) first"
        )
    session.delete(row)
    return row


def key_users(session: Session, key: ReleaseKeyRow) -> list[str]:
    """The releases signed by `key` that applied deployments pin, as `deployment: NAME@VERSION`."""
    keyid = release_key_id(key.public_key)
    others = session.scalars(select(ReleaseKeyRow).where(ReleaseKeyRow.name != key.name))
    if any(release_key_id(other.public_key) == keyid for other in others):
        return []  # the same key is applied under another name too: it stays trusted
    signed = {
        (row.name, row.version): row
        for row in session.scalars(select(ReleaseRow).where(ReleaseRow.key_id == keyid))
    }
    users = []
    for deployment in session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)):
        for entry in _entries(deployment.document):
            for release in signed.values():
                if _pins(entry, release):
                    users.append(f"{deployment.name}: {release.name}@{release.version}")
    return users


def remove_release_key(session: Session, name: str) -> ReleaseKeyRow:
    """Delete an applied ReleaseKey (the caller recompiles and commits).

    Raises:
        NotFoundError: no such key.
        ConflictError: a deployment pins a release it signed.
    """
    row = session.get(ReleaseKeyRow, name)
    if row is None:
        raise NotFoundError(f"no release key {name[:80]!r}")
    users = key_users(session, row)
    if users:
        shown = ", ".join(users[:_SHOWN]) + (
            f" and {len(users) - _SHOWN} more" if len(users) > _SHOWN else ""
        )
        raise ConflictError(
            f"release key {name} signed releases that deployments run ({shown}): nodes verify "
            "them with it; point those deployments at releases signed by another key first"
        )
    session.delete(row)
    return row
