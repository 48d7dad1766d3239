"""The DOWNLOAD state's work: fetch into a partial file, resume, check the digest."""

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fogline._durable import make_dirs, publish
from fogline.agent._backoff import Backoff
from fogline.artifact import sha256_file

from ._blocking import in_thread
from ._errors import ArtifactFetchError, ReleaseRejectedError
from ._models import ReleaseTarget
from ._ports import ArtifactSource
from ._verify import check_download


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """Everything one download needs besides the target."""

    source: ArtifactSource
    partial: Path
    archive: Path
    max_bytes: int
    attempts: int
    backoff: Backoff
    sleep: Callable[[float], Awaitable[None]]
    on_chunk: Callable[[int, int | None], None]  # (bytes so far, total or None)


async def download(target: ReleaseTarget, plan: DownloadPlan) -> str | None:
    """Leave the archive of `target` complete at `plan.archive`, its digest checked.

    A partial file from an earlier attempt (or an earlier process) is resumed.
    A resumed file whose digest is wrong is fetched once more from zero: a
    power cut can leave a torn tail that no server sent.

    Returns the digest it computed of the archive's bytes (the target's), or
    None when the archive was already in place and nothing was hashed.

    Raises:
        ArtifactFetchError: the source failed `attempts` times (or permanently).
        ReleaseRejectedError: the bytes are not the target's, or too large.
        OSError: the disk failed.
    """
    if plan.archive.exists():
        return None  # renamed into place by an earlier attempt, digest already checked
    await in_thread(make_dirs, plan.partial.parent)
    limit = plan.max_bytes if target.size is None else min(plan.max_bytes, target.size)
    for from_zero in (False, True):
        if from_zero:
            plan.partial.unlink(missing_ok=True)
        resumed = await _fetch(target, plan, limit)
        held = await in_thread(sha256_file, plan.partial)
        try:
            check_download(target, held)
        except ReleaseRejectedError:
            plan.partial.unlink(missing_ok=True)
            if resumed and not from_zero:
                continue
            raise
        # The archive name means "complete and checked": publish fsyncs the
        # bytes before the rename makes the name true.
        await in_thread(publish, plan.partial, plan.archive)
        return held
    raise AssertionError("unreachable")  # pragma: no cover


async def _fetch(target: ReleaseTarget, plan: DownloadPlan, limit: int) -> bool:
    """Fetch until the source reports success; True if any attempt resumed."""
    resumed = False

    def on_bytes(size: int) -> None:
        # Raising here aborts the source's fetch: an endless or oversized
        # body stops at the limit instead of filling the disk.
        if size > limit:
            raise ReleaseRejectedError(f"the download exceeds {limit} bytes")
        plan.on_chunk(size, target.size)

    for attempt in range(1, plan.attempts + 1):
        offset = _size(plan.partial)
        if offset > limit:
            os.truncate(plan.partial, 0)
            offset = 0
        resumed = resumed or offset > 0
        try:
            await plan.source.fetch(target.digest, plan.partial, offset=offset, on_bytes=on_bytes)
        except ArtifactFetchError as exc:
            if exc.status == 416:
                # The partial is longer than the artifact: start over.
                plan.partial.unlink(missing_ok=True)
            elif not exc.is_transient:
                raise
            if attempt == plan.attempts:
                raise
            await plan.sleep(plan.backoff.next_delay(exc.retry_after_s))
            continue
        return resumed
    raise AssertionError("unreachable")  # pragma: no cover


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Throttle:
    """Lets a report through at most every `interval_s` (progress is a stream to the hub)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last = -float("inf")

    def ready(self, *, force: bool = False) -> bool:
        now = self._clock()
        if force or now - self._last >= self._interval_s:
            self._last = now
            return True
        return False
