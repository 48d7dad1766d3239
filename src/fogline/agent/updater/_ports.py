"""The updater's two ports: where archives come from, and who runs modules.

The agent adapts the supervisor to `ModuleActivator` and the hub client to
`ArtifactSource`; tests use the in-memory fakes in `_memory`.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from fogline.artifact import ModuleSpec

from ._models import ReleaseTarget


class ArtifactSource(Protocol):
    """Fetches release archives by digest, resumably."""

    async def fetch(
        self, digest: str, dest: Path, *, offset: int, on_bytes: Callable[[int], None]
    ) -> None:
        """Write the archive `digest` into `dest`, keeping its first `offset` bytes.

        `dest` holds `offset` bytes from an earlier attempt (0: start afresh).
        Bytes are appended from `offset`; a source that cannot resume may
        truncate `dest` and start over. After each chunk is written (not
        buffered) call `on_bytes(size)` with the file's size so far; it may
        raise to abort the fetch. The caller checks the digest.

        Raises:
            ArtifactFetchError: the fetch failed; `dest` keeps what was written.
        """
        ...


@runtime_checkable
class DeltaSource(Protocol):
    """An ArtifactSource that can also fetch deltas (see _delta); optional."""

    async def fetch_delta(
        self, digest: str, base: str, dest: Path, *, on_bytes: Callable[[int], None]
    ) -> None:
        """Write the delta from the archive `base` to the archive `digest` into
        `dest` (truncated first), calling `on_bytes(size)` after each chunk.

        Raises:
            ArtifactFetchError: none exists (404) or the fetch failed; the
                caller then downloads the full archive.
        """
        ...


class ModuleActivator(Protocol):
    """Starts, stops and health-checks module processes (the supervisor)."""

    async def start(
        self, name: str, install_dir: Path, spec: ModuleSpec, target: ReleaseTarget
    ) -> None:
        """Start `name` from `install_dir` with the target's config and env.

        Raises:
            Exception: any error means it did not start; the updater rolls back.
        """
        ...

    async def stop(self, name: str) -> None:
        """Stop `name` and wait until it has exited; a no-op if it is not running.

        Raises:
            Exception: it could not be stopped.
        """
        ...

    async def wait_healthy(self, name: str, timeout_s: float) -> bool:
        """True once `name` passes its health check within `timeout_s`, False otherwise."""
        ...
