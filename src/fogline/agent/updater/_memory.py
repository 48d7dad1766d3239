"""In-memory fakes of the ports, for tests and simulations."""

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fogline._durable import write_all
from fogline.artifact import ModuleSpec

from ._errors import ArtifactFetchError, TufRefusedError
from ._models import ReleaseTarget
from ._tuf import TrustedTarget

_DEFAULT_CHUNK: Final = 64 * 1024


class MemoryArtifactSource:
    """Serves archives from memory, resuming from any offset.

    `fail_after_bytes`: every fetch delivers at most that many bytes and then
    fails with a transient ArtifactFetchError, like a link that drops; set it
    back to None to heal the link. `fetches` records (digest, offset) of
    every call, so a test can see that a download resumed.
    """

    def __init__(
        self,
        blobs: Mapping[str, bytes],
        *,
        fail_after_bytes: int | None = None,
        chunk_bytes: int = _DEFAULT_CHUNK,
        deltas: Mapping[tuple[str, str], bytes] | None = None,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes: expected >= 1, got {chunk_bytes}")
        self.blobs = dict(blobs)
        self.fail_after_bytes = fail_after_bytes
        self.chunk_bytes = chunk_bytes
        self.fetches: list[tuple[str, int]] = []
        # (target digest, base digest) -> delta bytes; absent pairs answer 404.
        self.deltas = dict(deltas or {})
        self.delta_fetches: list[tuple[str, str]] = []

    async def fetch_delta(
        self, digest: str, base: str, dest: Path, *, on_bytes: Callable[[int], None]
    ) -> None:
        self.delta_fetches.append((digest, base))
        delta = self.deltas.get((digest, base))
        if delta is None:
            raise ArtifactFetchError(digest, "no delta", status=404)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for start in range(0, len(delta), self.chunk_bytes):
                write_all(fd, delta[start : start + self.chunk_bytes])
                on_bytes(min(len(delta), start + self.chunk_bytes))
                await asyncio.sleep(0)
        finally:
            os.close(fd)

    async def fetch(
        self, digest: str, dest: Path, *, offset: int, on_bytes: Callable[[int], None]
    ) -> None:
        self.fetches.append((digest, offset))
        blob = self.blobs.get(digest)
        if blob is None:
            raise ArtifactFetchError(digest, "no such artifact", status=404)
        if offset > len(blob):
            offset = 0  # the partial is longer than the blob: start over
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            position, sent = offset, 0
            while position < len(blob):
                if self.fail_after_bytes is not None and sent >= self.fail_after_bytes:
                    raise ArtifactFetchError(digest, "connection reset (injected)")
                size = self.chunk_bytes
                if self.fail_after_bytes is not None:
                    size = min(size, self.fail_after_bytes - sent)
                chunk = blob[position : position + size]
                write_all(fd, chunk)
                position += len(chunk)
                sent += len(chunk)
                on_bytes(position)
                await asyncio.sleep(0)  # a real download yields
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class ActivatorCall:
    """One call the MemoryActivator received."""

    op: str  # "start" | "stop" | "wait_healthy"
    name: str
    version: str | None = None  # the version started (start only)


class MemoryActivator:
    """Records calls and pretends to run modules.

    `health` maps a version (or "name@version") to what `wait_healthy`
    answers for it (default True); `fail_start` lists versions whose start
    raises. `running` maps module name to the version started and not
    stopped since.
    """

    def __init__(
        self,
        *,
        health: Mapping[str, bool] | None = None,
        fail_start: set[str] | None = None,
    ) -> None:
        self.health = dict(health or {})
        self.fail_start = set(fail_start or ())
        self.running: dict[str, str] = {}
        self.install_dirs: dict[str, Path] = {}
        self.targets: dict[str, ReleaseTarget] = {}
        self.calls: list[ActivatorCall] = []

    async def start(
        self, name: str, install_dir: Path, spec: ModuleSpec, target: ReleaseTarget
    ) -> None:
        version = str(spec.version)
        self.calls.append(ActivatorCall("start", name, version))
        await asyncio.sleep(0)
        if version in self.fail_start:
            raise RuntimeError("failed to start (injected)")
        self.running[name] = version
        self.install_dirs[name] = install_dir
        self.targets[name] = target

    async def stop(self, name: str) -> None:
        self.calls.append(ActivatorCall("stop", name))
        await asyncio.sleep(0)
        self.running.pop(name, None)

    async def wait_healthy(self, name: str, timeout_s: float) -> bool:
        self.calls.append(ActivatorCall("wait_healthy", name))
        await asyncio.sleep(0)
        version = self.running.get(name)
        if version is None:
            return False
        return self.health.get(f"{name}@{version}", self.health.get(version, True))


class MemoryTargetTrust:
    """A TargetTrust over a dict of signed targets ((name, version) -> TrustedTarget);
    `lookups` records every question, so a test sees it came before a fetch."""

    def __init__(self, signed: Mapping[tuple[str, str], TrustedTarget]) -> None:
        self.signed = dict(signed)
        self.lookups: list[tuple[str, str]] = []

    async def lookup(self, name: str, version: str) -> TrustedTarget:
        """See TargetTrust.lookup.

        Raises:
            TufRefusedError: the release is not in `signed`.
        """
        self.lookups.append((name, version))
        found = self.signed.get((name, version))
        if found is None:
            raise TufRefusedError(f"{name}/{version}", "not in the TUF metadata")
        return found
