"""Delta updates: deltas from a release a node has to one it is sent, made on
first request and cached beside the artifact store.

    ARTIFACTS/deltas/<target hex>/<base hex>.zst    a delta (fogline.artifact._delta)
    ARTIFACTS/deltas/<target hex>/<base hex>.none   "no delta worth serving" for the pair

A pair gets no delta (a `.none` marker, so the work is not repeated) when
either archive is too large to delta, when the target cannot be rebuilt
byte for byte from its tar, or when the delta is not at most `max_ratio` of
the full archive: then the node downloads the full archive, as before.

Bounded in time and disk: one delta is made at a time per hub process, in
a worker thread, off the event loop; a request waits for it at most
`wait_s` (then answers 404 and the work finishes for the next asker); the
cache's files are capped at `max_cache_bytes` in total, the least recently
made evicted first. Removing a release removes every delta of and to it.
"""

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from starlette.concurrency import run_in_threadpool

from fogline._durable import make_dirs, write_atomic
from fogline._log import event
from fogline.artifact import UnsafeArchiveError
from fogline.artifact._delta import DEFAULT_MAX_TAR_BYTES, make_delta

from ._artifacts import ArtifactStore, check_digest

log = logging.getLogger("fogline.hub.release")

_DELTA: Final = ".zst"
_NONE: Final = ".none"


@dataclass(frozen=True, slots=True)
class DeltaSettings:
    """How the hub makes and keeps deltas; `enabled=False` answers every
    delta request 404 (nodes then download full archives)."""

    enabled: bool = True
    # A delta larger than this share of the full archive is not worth its
    # risk and CPU on the node: the node downloads the archive instead.
    max_ratio: float = 0.5
    max_cache_bytes: int = 1 << 30
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES
    wait_s: float = 30.0


@dataclass(slots=True)
class DeltaCache:
    """The cache of one hub process; replicas sharing ARTIFACTS share its files."""

    settings: DeltaSettings = field(default_factory=DeltaSettings)
    _lock: asyncio.Lock | None = None
    _pending: dict[tuple[str, str], "asyncio.Task[Path | None]"] = field(default_factory=dict)

    async def get(self, store: ArtifactStore, target: str, base: str) -> Path | None:
        """The delta from `base` to `target`, made now if need be; None: serve none.

        Both digests must name archives in `store` (the caller checked the rows).
        """
        if not self.settings.enabled or target == base:
            return None
        made = _lookup(store, target, base)
        if made is not False:
            return made
        key = (target, base)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._make(store, target, base))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        try:
            # Shielded: a request that gives up leaves the work to finish for the next.
            async with asyncio.timeout(self.settings.wait_s):
                return await asyncio.shield(task)
        except TimeoutError:
            return None

    async def _make(self, store: ArtifactStore, target: str, base: str) -> Path | None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one at a time: CPU and memory stay bounded
            made = _lookup(store, target, base)
            if made is not False:
                return made
            return await run_in_threadpool(_make_file, store, target, base, self.settings)


def delta_root(store: ArtifactStore) -> Path:
    return store.root / "deltas"


def _paths(store: ArtifactStore, target: str, base: str) -> tuple[Path, Path]:
    directory = delta_root(store) / check_digest(target).removeprefix("sha256:")
    name = check_digest(base).removeprefix("sha256:")
    return directory / (name + _DELTA), directory / (name + _NONE)


def _lookup(store: ArtifactStore, target: str, base: str) -> Path | Literal[False] | None:
    """The cached delta, None when the pair has none, False when not tried yet."""
    delta, none = _paths(store, target, base)
    if delta.is_file():
        return delta
    if none.is_file():
        return None
    return False


def _make_file(
    store: ArtifactStore, target: str, base: str, settings: DeltaSettings
) -> Path | None:
    delta_path, none_path = _paths(store, target, base)
    make_dirs(delta_path.parent)
    try:
        sizes = [store.path_for(d).stat().st_size for d in (target, base)]
        # A tar is larger than its archive: over the limit, do not even read it.
        if max(sizes) > settings.max_tar_bytes:
            target_bytes, base_bytes = b"", b""
        else:
            target_bytes = store.path_for(target).read_bytes()
            base_bytes = store.path_for(base).read_bytes()
    except FileNotFoundError:
        return None  # removed meanwhile; nothing to remember
    why = ""
    try:
        if not target_bytes:
            raise UnsafeArchiveError("archive", f"larger than {settings.max_tar_bytes} bytes")
        delta = make_delta(base_bytes, target_bytes, max_tar_bytes=settings.max_tar_bytes)
    except UnsafeArchiveError as exc:
        delta, why = None, exc.reason
    if delta is None:
        why = why or "the target is not rebuildable from its tar"
    elif len(delta) > settings.max_ratio * len(target_bytes):
        why = f"the delta is {len(delta)} bytes of {len(target_bytes)}"
        delta = None
    if delta is None:
        write_atomic(none_path, b"", mode=0o644, make_parents=False)
        event(log, "release.delta_refused", target=target, base=base, reason=why)
        return None
    write_atomic(delta_path, delta, mode=0o644, make_parents=False)
    event(log, "release.delta_made", target=target, base=base, bytes=len(delta),
          full=len(target_bytes))  # fmt: skip
    _evict(store, settings.max_cache_bytes, keep=delta_path)
    return delta_path


def _evict(store: ArtifactStore, max_bytes: int, *, keep: Path) -> None:
    """Delete the oldest deltas until the cache holds at most `max_bytes`."""
    files: list[tuple[float, int, Path]] = []
    for path in delta_root(store).glob("*/*" + _DELTA):
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            files.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size


def remove_deltas(store: ArtifactStore, digest: str) -> int:
    """Delete every delta (and marker) of and to the archive `digest`; returns how many."""
    hexdigest = check_digest(digest).removeprefix("sha256:")
    root = delta_root(store)
    removed = 0
    for pattern in (f"{hexdigest}/*", f"*/{hexdigest}{_DELTA}", f"*/{hexdigest}{_NONE}"):
        for path in root.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    with contextlib.suppress(OSError):
        os.rmdir(root / hexdigest)
    return removed
