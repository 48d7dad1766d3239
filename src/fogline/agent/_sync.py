"""Desired-state sync: long-poll the hub, persist, apply, report.

The last desired state lives in DATA/state/desired.json, written atomically
and checked against its revision (a content hash) when read back. Started
while the hub is away, the agent applies that copy and keeps retrying: the
node runs on its last known orders (edge autonomy).

Both ways in (the hub's answer, the local copy) go through
`parse_desired_state`: the revision is checked on the document as received,
then the document is read into the typed models once. A document that is
intact but unusable here (a newer version, a field that does not parse) is
not applied: the node keeps running its last one and reports the revision
refused, with the reason.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from fogline._durable import write_atomic
from fogline._log import event
from fogline.hubclient import HubError
from fogline.protocol import (
    AppliedState,
    DesiredStateDoc,
    DesiredStateError,
    canonical_json,
    parse_desired_state,
)

from ._backoff import Backoff
from ._clock import Clock
from ._hublink import HubLink

log = logging.getLogger("fogline.agent.sync")
LONG_POLL_S = 25.0

Applier = Callable[[DesiredStateDoc], Awaitable[None]]


class DesiredStore:
    """The node's copy of its last desired state."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state" / "desired.json"

    def load(self) -> DesiredStateDoc | None:
        if not self.path.exists():
            return None
        try:
            return parse_desired_state(self.path.read_bytes())
        except (OSError, DesiredStateError) as exc:
            damaged = isinstance(exc, DesiredStateError) and exc.revision is None
            event(
                log,
                "sync.local_copy_corrupt" if damaged else "sync.local_copy_unreadable",
                logging.ERROR,
                path=str(self.path),
                error=str(exc),
            )
            return None

    def save(self, doc: DesiredStateDoc) -> None:
        # As received: the document dumps exactly what it was given, fields
        # this version does not know included, so the copy keeps its revision.
        write_atomic(self.path, doc.model_dump_json().encode(), mode=0o600)


class ConfigApplier:
    """Writes `config` of the desired state where modules read it: DATA/config/config.json."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "config" / "config.json"

    async def __call__(self, doc: DesiredStateDoc) -> None:
        await asyncio.to_thread(write_atomic, self.path, canonical_json(doc.document.config))


class SyncLoop:
    """Keeps the node converged on the hub's desired state."""

    def __init__(
        self,
        store: DesiredStore,
        appliers: list[Applier],
        on_applied: Callable[[AppliedState], None],
        *,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.store = store
        self.appliers = appliers
        self.on_applied = on_applied
        self.current: DesiredStateDoc | None = None
        # The revision last refused as unusable here: polled for as the
        # ETag, so the node waits for the next change instead of fetching it again.
        self.refused: str | None = None

    async def apply(self, doc: DesiredStateDoc) -> None:
        try:
            for applier in self.appliers:
                await applier(doc)
        except Exception as exc:  # an applier's failure is reported, not fatal
            event(log, "sync.apply_failed", logging.ERROR, revision=doc.revision, error=str(exc))
            self.on_applied(AppliedState(revision=doc.revision, ok=False, error=str(exc)[:4000]))
            return
        event(log, "sync.applied", revision=doc.revision)
        self.on_applied(AppliedState(revision=doc.revision, ok=True))

    async def start_from_local_copy(self) -> None:
        doc = self.store.load()
        if doc is not None:
            self.current = doc
            event(log, "sync.local_copy_loaded", revision=doc.revision)
            await self.apply(doc)

    async def run(self, link: HubLink) -> None:
        backoff = Backoff(initial_s=0.5, max_s=30.0, rand=self.clock.rand)
        while True:
            known = self.refused or (self.current.revision if self.current else None)
            try:
                doc = await link.get_desired(known, LONG_POLL_S)
            except DesiredStateError as exc:
                await self._refuse(exc, backoff)
                continue
            except HubError as exc:
                delay = backoff.next_delay(exc.retry_after_s)
                event(
                    log,
                    "sync.poll_failed",
                    logging.WARNING,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await self.clock.sleep(delay)
                continue
            backoff.reset()
            if doc is None:
                continue  # long-poll timed out: nothing new
            self.refused = None
            await asyncio.to_thread(self.store.save, doc)
            self.current = doc
            await self.apply(doc)

    async def _refuse(self, exc: DesiredStateError, backoff: Backoff) -> None:
        """A desired state that must not be applied: damaged on the way (fetch
        it again, after a pause), or intact and unusable here (report it
        refused, keep running the last one, wait for the next change)."""
        if exc.revision is None:
            event(log, "sync.revision_mismatch", logging.ERROR, error=str(exc))
            await self.clock.sleep(backoff.next_delay())
            return
        backoff.reset()  # the hub answered: only this document is at fault
        event(log, "sync.refused", logging.ERROR, revision=exc.revision, error=str(exc))
        self.refused = exc.revision
        self.on_applied(AppliedState(revision=exc.revision, ok=False, error=str(exc)[:4000]))
