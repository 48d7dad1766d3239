"""Per-device desired state: compile deployments for a device and store them.

The hub keeps one DesiredStateRow per device: the document it serves and the
revision the device last reported applied. Every change to a device's row
takes the next `fleet_generation.desired_seq` and stamps it on the row, which
is how each replica's notifier (_desired_watch.py) knows whose long-polls to
wake, whichever replica made the change.
"""

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fogline._log import event
from fogline.manifest import (
    Deployment,
    DesiredState,
    ManifestSource,
    canonical_json,
    compile_desired_state,
    load_manifests,
    revision_of,
)
from fogline.protocol import DesiredDocument, SyncReport, SyncStatus

from ._clock import utcnow
from ._device_labels import LabelledDevice, effective_labels
from ._schema import (
    DeploymentRow,
    DesiredStateRow,
    DeviceRow,
    FleetGenerationRow,
    ReleaseKeyRow,
)

log = logging.getLogger("fogline.hub.desired")

# Device ids per `IN (...)` when reading rows in bulk: well under SQLite's
# and PostgreSQL's bind parameter limits.
ID_CHUNK: Final = 500


def plain(value: Any) -> Any:
    """A frozen manifest tree as plain JSON types, for the database and the wire."""
    return orjson.loads(canonical_json(value))


def _generation_row(session: Session) -> FleetGenerationRow:
    # Read afresh: the counters are moved by UPDATEs that leave the session's
    # copy alone (bump_generation).
    row = session.get(FleetGenerationRow, 1, populate_existing=True)
    assert row is not None, "migration 0002 creates the fleet_generation row"
    return row


def bump_generation(session: Session) -> None:
    session.execute(
        update(FleetGenerationRow)
        .where(FleetGenerationRow.id == 1)
        .values(generation=FleetGenerationRow.generation + 1)
        # No session to synchronise (nothing holds the counter row as an
        # object); "auto" would scan every object the session holds, which
        # made a 10,000-device apply quadratic.
        .execution_options(synchronize_session=False)
    )


def next_desired_seq(session: Session, count: int = 1) -> int:
    """Take the next `count` fleet sequence numbers for desired-state changes;
    returns the last (the block is `last - count + 1 .. last`).

    The UPDATE locks the one counter row until commit, so transactions that
    change desired states commit in sequence order: a replica that has seen
    N committed has seen every change numbered below N.
    """
    seq = session.scalar(
        update(FleetGenerationRow)
        .where(FleetGenerationRow.id == 1)
        .values(desired_seq=FleetGenerationRow.desired_seq + count)
        .returning(FleetGenerationRow.desired_seq)
        .execution_options(synchronize_session=False)  # see bump_generation
    )
    assert seq is not None, "migration 0002 creates the fleet_generation row"
    return int(seq)


def desired_changes_since(session: Session, seq: int) -> list[tuple[str, int]]:
    """(device id, sequence number) of every desired state changed after `seq`."""
    rows = session.execute(
        select(DesiredStateRow.device_id, DesiredStateRow.seq).where(DesiredStateRow.seq > seq)
    )
    return [(device_id, int(row_seq)) for device_id, row_seq in rows]


def touch_desired(session: Session, device_id: str) -> None:
    """Wake the device's long-poll without changing its state (it was revoked:
    the poll then re-authenticates and is refused)."""
    row = session.get(DesiredStateRow, device_id)
    if row is not None:
        row.seq = next_desired_seq(session)


def parse_deployments(rows: Iterable[DeploymentRow]) -> list[Deployment]:
    """Turn stored documents back into Deployment objects (they were valid when applied)."""
    sources = [ManifestSource(f"<applied {row.name}>", json.dumps(row.document)) for row in rows]
    return list(load_manifests(sources).deployments) if sources else []


def applied_deployments(session: Session) -> list[Deployment]:
    """Every applied deployment, parsed, by name."""
    return parse_deployments(
        session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)).all()
    )


class DeploymentCache:
    """Parsed deployments, reloaded only when the fleet generation moves."""

    def __init__(self) -> None:
        self._generation = -1
        self._deployments: list[Deployment] = []

    def get(self, session: Session) -> list[Deployment]:
        generation = _generation_row(session).generation
        if generation != self._generation:
            self._deployments = applied_deployments(session)
            self._generation = generation
        return self._deployments

    def invalidate(self) -> None:
        self._generation = -1


@dataclass(frozen=True, slots=True)
class Recompiled:
    device_id: str
    old: DesiredStateRow | None
    new: DesiredState


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A trusted release key as nodes get it: base64 of the Ed25519 key, and
    its scope (module name patterns; None: every module)."""

    public_key: str
    modules: tuple[str, ...] | None = None


def release_keys(session: Session) -> dict[str, TrustedKey]:
    """Trusted release keys by name."""
    return {
        row.name: TrustedKey(
            row.public_key, tuple(row.modules) if row.modules is not None else None
        )
        for row in session.scalars(select(ReleaseKeyRow))
    }


def key_material(keys: Mapping[str, TrustedKey]) -> dict[str, str]:
    """`releaseKeys` of a desired document and `release_keys` of an
    enrollment answer: name -> base64 key, as before scopes existed."""
    return {name: key.public_key for name, key in sorted(keys.items())}


def key_scopes(keys: Mapping[str, TrustedKey]) -> dict[str, list[str]]:
    """The scopes of the scoped keys (name -> patterns); unscoped keys are left
    out, so a fleet without scopes gets the documents it got before."""
    return {
        name: list(key.modules) for name, key in sorted(keys.items()) if key.modules is not None
    }


class CompiledDevice(LabelledDevice, Protocol):
    """What compiling reads of a device: a DeviceRow, or a row of just these
    columns (an apply to the whole fleet reads no more than this)."""

    @property
    def id(self) -> str: ...
    @property
    def reported(self) -> Mapping[str, Any] | None: ...


COMPILE_COLUMNS: Final = (
    DeviceRow.id,
    DeviceRow.labels,
    DeviceRow.platform_labels,
    DeviceRow.reported,
)


def active_devices(session: Session) -> Sequence[Any]:
    """Every device not revoked, by name: its name and what compiling reads
    (rows of columns, not ORM objects: an apply reads the whole fleet)."""
    query = (
        select(DeviceRow.name, *COMPILE_COLUMNS)
        .where(DeviceRow.revoked_at.is_(None))
        .order_by(DeviceRow.name)
    )
    return session.execute(query).all()


def served_revisions(session: Session, ids: Sequence[str] | None = None) -> dict[str, str]:
    """Device id -> the revision it is served now, for every device or `ids`."""
    query = select(DesiredStateRow.device_id, DesiredStateRow.revision)
    if ids is None:
        return dict(session.execute(query).tuples().all())
    found: dict[str, str] = {}
    for start in range(0, len(ids), ID_CHUNK):
        chunk = query.where(DesiredStateRow.device_id.in_(ids[start : start + ID_CHUNK]))
        found.update(session.execute(chunk).tuples().all())
    return found


def served_documents(session: Session, holders: Mapping[str, str]) -> dict[str, Any]:
    """Revision -> the served document, read from one device that holds it
    (`holders`: revision -> device id). A revision is the hash of its
    document: decoding every device's copy was a tenth of an apply."""
    found: dict[str, Any] = {}
    ids = sorted(holders.values())
    for start in range(0, len(ids), ID_CHUNK):
        query = select(DesiredStateRow.revision, DesiredStateRow.document).where(
            DesiredStateRow.device_id.in_(ids[start : start + ID_CHUNK])
        )
        found.update(session.execute(query).tuples().all())
    return found


def compile_for(
    deployments: Sequence[Deployment], device: CompiledDevice, keys: Mapping[str, TrustedKey]
) -> DesiredState:
    """The device's desired state; with modules, it also carries the release
    keys the node must verify them with, and their scopes.

    The document goes through the wire model (`DesiredDocument`), which dumps
    exactly the fields it is given: the revision of every document compiled
    before the model existed is unchanged (tests/protocol/golden).
    """
    return DesiredCompiler(deployments, keys)(device)


class DesiredCompiler:
    """`compile_for` over many devices, compiling once per distinct input.

    A device's document depends only on which deployments select it and on
    the restarts its node honoured (plus the deployments and keys, the same
    for every device here), not on the rest of its labels. An apply to
    10,000 devices compiled, validated and hashed 10,000 documents that
    came in a few hundred kinds; it now does each kind once. Devices of one
    kind share the returned DesiredState: its document is not to be
    modified (the store and the rollout copy it with `plain`).
    """

    def __init__(self, deployments: Sequence[Deployment], keys: Mapping[str, TrustedKey]) -> None:
        self._deployments = list(deployments)
        self._keys = keys
        self._compiled: dict[
            tuple[tuple[int, ...], tuple[tuple[str, int], ...]], tuple[DesiredState, str | None]
        ] = {}

    def __call__(self, device: CompiledDevice) -> DesiredState:
        labels = effective_labels(device)
        selecting = tuple(
            i
            for i, deployment in enumerate(self._deployments)
            if deployment.selector.matches(labels)
        )
        honoured = honoured_restarts(device.reported)
        key = (selecting, tuple(sorted(honoured.items())))
        found = self._compiled.get(key)
        if found is None:
            layers = [self._deployments[i] for i in selecting]
            found = self._compiled[key] = _compile(layers, labels, honoured, self._keys)
        state, problem = found
        if problem is not None:
            # Only a deployment stored by some older hub without its releases
            # resolved gets here. Served as compiled: the node refuses it and
            # reports why, as it did before the contract was typed.
            event(log, "desired.not_the_contract", logging.ERROR, device=device.id, error=problem)
        return state


def _compile(
    layers: Sequence[Deployment],
    labels: Mapping[str, str],
    honoured: Mapping[str, int],
    keys: Mapping[str, TrustedKey],
) -> tuple[DesiredState, str | None]:
    """One document, and why it is not the wire contract (None: it is)."""
    compiled = compile_desired_state(layers, labels)
    document = plain(compiled.document)
    # The restart requests the node honoured stay in the document
    # (hub/_restart_healing.py): a recompile then changes nothing a restart
    # asked, and a node never asked keeps the revision it always had.
    for entry in document.get("modules") or ():
        generation = honoured.get(str(entry.get("name"))) if isinstance(entry, dict) else None
        if generation:
            entry["restartGeneration"] = generation
    if document.get("modules"):
        document["releaseKeys"] = key_material(keys)
        scopes = key_scopes(keys)
        if scopes:
            document["releaseKeyScopes"] = scopes
    problem = None
    try:
        document = DesiredDocument.model_validate(document).to_dict()
    except ValidationError as exc:
        problem = str(exc)
    return DesiredState(revision_of(document), document), problem


def honoured_restarts(reported: Mapping[str, Any] | None) -> dict[str, int]:
    """Module name -> the restart generation the node last reported
    honoured (ModuleReport.restart_generation), from a device's stored
    report; modules at 0 are left out."""
    modules = ((reported or {}).get("modules") or {}).get("modules")
    if not isinstance(modules, Mapping):
        return {}
    found: dict[str, int] = {}
    for name, entry in modules.items():
        value = entry.get("restart_generation") if isinstance(entry, Mapping) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found[str(name)] = value
    return found


def stored_document(document: Mapping[str, Any] | None) -> DesiredDocument | None:
    """A desired document the hub stored, read through the wire model; None
    when there is none or it does not parse (see compile_for)."""
    if document is None:
        return None
    try:
        return DesiredDocument.model_validate(document)
    except ValidationError:
        return None


def release_refs(document: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The releases a desired-state document names: {name, version, digest} of
    each module entry (resolved at apply, so every field is there)."""
    parsed = stored_document(document)
    return [
        {"name": entry.name, "version": entry.version, "digest": entry.digest}
        for entry in (parsed.modules if parsed is not None else ())
    ]


def store_desired(session: Session, device: DeviceRow, state: DesiredState) -> bool:
    """Save a device's compiled state; True when its revision changed.

    The releases of the document it replaces stay fetchable by the device
    (`previous_releases`): it may be moving between the two.
    """
    return store_desired_many(session, [(device.id, state)]) == 1


def store_desired_many(session: Session, states: Sequence[tuple[str, DesiredState]]) -> int:
    """Save many devices' compiled states at once; returns how many changed.

    What a wave or a rollback of 10,000 devices needs: the current rows load
    in a few `IN` queries instead of one query (and one autoflush) each, and
    the changed devices take one block of sequence numbers with one UPDATE.
    The block is taken under the same row lock as a single number, so
    transactions still commit in sequence order.
    """
    ids = [device_id for device_id, _ in states]
    current: dict[str, DesiredStateRow] = {}
    # The first query autoflushes what the session holds, so a row added
    # earlier in this transaction is found, as session.get would find it.
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        rows = session.scalars(select(DesiredStateRow).where(DesiredStateRow.device_id.in_(chunk)))
        current.update((row.device_id, row) for row in rows)
    changed = [
        (device_id, state)
        for device_id, state in states
        if (row := current.get(device_id)) is None or row.revision != state.revision
    ]
    if not changed:
        return 0
    last = next_desired_seq(session, len(changed))
    now = utcnow()
    # Reading a document through the wire model is most of the cost of a
    # replaced row, and thousands of rows hold a few revisions (the hash of
    # their document): each revision's releases are read once.
    refs: dict[str, list[dict[str, str]]] = {}
    for seq, (device_id, state) in enumerate(changed, start=last - len(changed) + 1):
        row = current.get(device_id)
        if row is None:
            session.add(
                DesiredStateRow(
                    device_id=device_id,
                    revision=state.revision,
                    document=plain(state.document),
                    updated_at=now,
                    applied_revision=None,
                    applied_ok=True,
                    applied_error=None,
                    seq=seq,
                    previous_releases=[],
                )
            )
        else:
            if row.revision not in refs:
                refs[row.revision] = release_refs(row.document)
            row.previous_releases = list(refs[row.revision])
            row.revision, row.document, row.updated_at = state.revision, plain(state.document), now
            row.seq = seq
    return len(changed)


def recompile_device(session: Session, cache: DeploymentCache, device: DeviceRow) -> bool:
    session.flush()
    state = compile_for(cache.get(session), device, release_keys(session))
    return store_desired(session, device, state)


class AppliedColumns(Protocol):
    """What a sync report reads: a DesiredStateRow, or a row of just these columns."""

    @property
    def revision(self) -> str: ...
    @property
    def applied_revision(self) -> str | None: ...
    @property
    def applied_ok(self) -> bool: ...
    @property
    def applied_error(self) -> str | None: ...


SYNC_COLUMNS: Final = (
    DesiredStateRow.device_id,
    DesiredStateRow.revision,
    DesiredStateRow.applied_revision,
    DesiredStateRow.applied_ok,
    DesiredStateRow.applied_error,
)


def sync_report(row: AppliedColumns | None) -> SyncReport:
    if row is None:
        return SyncReport(desired_revision=None, reported_revision=None, status="pending")
    status: SyncStatus
    if row.applied_revision == row.revision:
        status = "in-sync" if row.applied_ok else "error"
    else:
        status = "pending"
    return SyncReport(
        desired_revision=row.revision,
        reported_revision=row.applied_revision,
        status=status,
        error=None if row.applied_ok else row.applied_error,
    )
