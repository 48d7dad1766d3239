"""Desired-state sync: long-poll the hub, persist, apply, report.

The last desired state lives in DATA/state/desired.json, written atomically
and checked against its revision (a content hash) when read back. Started
while the hub is away, the agent applies that copy and keeps retrying: the
node runs on its last known orders (edge autonomy).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from fogline._durable import write_atomic
from fogline._log import event
from fogline.hubclient import HubError
from fogline.protocol import AppliedState, DesiredStateDoc, canonical_json, revision_of

from ._backoff import Backoff
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
            doc = DesiredStateDoc.model_validate_json(self.path.read_bytes())
        except ValueError as exc:
            event(
                log,
                "sync.local_copy_unreadable",
                logging.ERROR,
                path=str(self.path),
                error=str(exc),
            )
            return None
        if revision_of(doc.document) != doc.revision:
            event(log, "sync.local_copy_corrupt", logging.ERROR, path=str(self.path))
            return None
        return doc

    def save(self, doc: DesiredStateDoc) -> None:
        write_atomic(self.path, orjson.dumps(doc.model_dump()), mode=0o600)


class ConfigApplier:
    """Writes `config` of the desired state where modules read it: DATA/config/config.json."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "config" / "config.json"

    async def __call__(self, doc: DesiredStateDoc) -> None:
        config: Any = doc.document.get("config", {})
        await asyncio.to_thread(write_atomic, self.path, canonical_json(config))


class SyncLoop:
    """Keeps the node converged on the hub's desired state."""

    def __init__(
        self,
        store: DesiredStore,
        appliers: list[Applier],
        on_applied: Callable[[AppliedState], None],
    ) -> None:
        self.store = store
        self.appliers = appliers
        self.on_applied = on_applied
        self.current: DesiredStateDoc | None = None

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
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        while True:
            try:
                doc = await link.get_desired(
                    self.current.revision if self.current else None, LONG_POLL_S
                )
            except HubError as exc:
                delay = backoff.next_delay(exc.retry_after_s)
                event(
                    log,
                    "sync.poll_failed",
                    logging.WARNING,
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if doc is None:
                continue  # long-poll timed out: nothing new
            if revision_of(doc.document) != doc.revision:
                event(log, "sync.revision_mismatch", logging.ERROR, revision=doc.revision)
                await asyncio.sleep(backoff.next_delay())
                continue
            await asyncio.to_thread(self.store.save, doc)
            self.current = doc
            await self.apply(doc)
