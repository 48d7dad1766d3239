"""Per-device desired state: compile deployments for a device, store, notify.

The hub keeps one DesiredStateRow per device: the document it serves and the
revision the device last reported applied. Every change to a device's row
also bumps `fleet_generation.desired_seq`, which each replica's notifier
watches to wake its long-polling devices, whichever replica made the change.
"""

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fogline.manifest import (
    Deployment,
    DesiredState,
    ManifestSource,
    canonical_json,
    compile_desired_state,
    load_manifests,
    revision_of,
)
from fogline.protocol import SyncReport, SyncStatus

from ._schema import (
    DeploymentRow,
    DesiredStateRow,
    DeviceRow,
    FleetGenerationRow,
    ReleaseKeyRow,
)
from ._store import effective_labels, utcnow


def plain(value: Any) -> Any:
    """A frozen manifest tree as plain JSON types, for the database and the wire."""
    return orjson.loads(canonical_json(value))


def _generation_row(session: Session) -> FleetGenerationRow:
    row = session.get(FleetGenerationRow, 1)
    assert row is not None, "migration 0002 creates the fleet_generation row"
    return row


def bump_generation(session: Session) -> None:
    session.execute(
        update(FleetGenerationRow)
        .where(FleetGenerationRow.id == 1)
        .values(generation=FleetGenerationRow.generation + 1)
    )


def desired_seq(session: Session) -> int:
    return int(
        session.scalar(select(FleetGenerationRow.desired_seq).where(FleetGenerationRow.id == 1))
        or 0
    )


def parse_deployments(rows: Iterable[DeploymentRow]) -> list[Deployment]:
    """Turn stored documents back into Deployment objects (they were valid when applied)."""
    sources = [ManifestSource(f"<applied {row.name}>", json.dumps(row.document)) for row in rows]
    return list(load_manifests(sources).deployments) if sources else []


class DeploymentCache:
    """Parsed deployments, reloaded only when the fleet generation moves."""

    def __init__(self) -> None:
        self._generation = -1
        self._deployments: list[Deployment] = []

    def get(self, session: Session) -> list[Deployment]:
        generation = _generation_row(session).generation
        if generation != self._generation:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)).all()
            self._deployments = parse_deployments(rows)
            self._generation = generation
        return self._deployments

    def invalidate(self) -> None:
        self._generation = -1


@dataclass(frozen=True, slots=True)
class Recompiled:
    device_id: str
    old: DesiredStateRow | None
    new: DesiredState


def release_keys(session: Session) -> dict[str, str]:
    """Trusted release keys by name (base64 of the Ed25519 key)."""
    return {row.name: row.public_key for row in session.scalars(select(ReleaseKeyRow))}


def compile_for(
    deployments: Sequence[Deployment], device: DeviceRow, keys: Mapping[str, str]
) -> DesiredState:
    """The device's desired state; with modules, it also carries the release
    keys the node must verify them with."""
    state = compile_desired_state(deployments, effective_labels(device))
    if not state.document.get("modules"):
        return state
    document = plain(state.document)
    document["releaseKeys"] = dict(sorted(keys.items()))
    return DesiredState(revision_of(document), document)


def store_desired(session: Session, device: DeviceRow, state: DesiredState) -> bool:
    """Save a device's compiled state; True when its revision changed."""
    row = session.get(DesiredStateRow, device.id)
    if row is not None and row.revision == state.revision:
        return False
    now = utcnow()
    if row is None:
        session.add(
            DesiredStateRow(
                device_id=device.id,
                revision=state.revision,
                document=plain(state.document),
                updated_at=now,
                applied_revision=None,
                applied_ok=True,
                applied_error=None,
            )
        )
    else:
        row.revision, row.document, row.updated_at = state.revision, plain(state.document), now
    session.execute(
        update(FleetGenerationRow)
        .where(FleetGenerationRow.id == 1)
        .values(desired_seq=FleetGenerationRow.desired_seq + 1)
    )
    return True


def recompile_device(session: Session, cache: DeploymentCache, device: DeviceRow) -> bool:
    session.flush()
    state = compile_for(cache.get(session), device, release_keys(session))
    return store_desired(session, device, state)


def sync_report(row: DesiredStateRow | None) -> SyncReport:
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


class DesiredNotifier:
    """Wakes long-polls when any desired state changes, in this replica or another.

    One task per replica polls `desired_seq` (one tiny query per tick); a
    change in this process also wakes waiters at once via `poke()`.
    """

    def __init__(self, tick_s: float = 0.5) -> None:
        self.tick_s = tick_s
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    closing = False

    def close(self) -> None:
        """The hub is stopping: answer every long-poll now, so shutdown is quick."""
        self.closing = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fire)

    def poke(self) -> None:
        """Thread-safe: called from request threads after a commit."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fire)

    async def wait(self, timeout_s: float) -> bool:
        """Wait for a change; True when one came, False on timeout."""
        event = self._event
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        return True

    async def watch(self, read_seq: Callable[[], int]) -> None:
        last = await asyncio.to_thread(read_seq)
        while True:
            await asyncio.sleep(self.tick_s)
            current = await asyncio.to_thread(read_seq)
            if current != last:
                last = current
                self._fire()
