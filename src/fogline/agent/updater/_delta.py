"""Delta updates on the node: rebuild the target's archive from the installed
release's archive and a delta from the hub, or leave it to the full download.

    <root>/bases/<name>/<digest>.tar.zst   the archive of the committed release
    <root>/downloads/<digest>.delta        a delta being fetched

COMMIT moves the checked archive into `bases/<name>/` (one per module, the
others deleted), so the next update of the module can ask for a delta from
it. DOWNLOAD asks for the delta first; the rebuilt bytes must have the
target's digest before they take the archive's name, and VERIFY then checks
the signature (or the TUF target) exactly as for a full download. Any
failure (no base, 404, a corrupt or hostile delta, a wrong digest, a base
that rotted on disk) deletes what the delta path wrote and returns False:
the full download follows.
"""

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fogline._durable import fsync_dir, make_dirs, write_atomic
from fogline.artifact import ArtifactError
from fogline.artifact._delta import apply_delta

from ._blocking import in_thread
from ._errors import ArtifactFetchError, ReleaseRejectedError
from ._layout import Layout
from ._models import ReleaseTarget
from ._ports import DeltaSource
from ._verify import check_download

_log = logging.getLogger("fogline.agent.updater")

_BASES: Final = "bases"
_ARCHIVE_SUFFIX: Final = ".tar.zst"


def base_path(layout: Layout, name: str, digest: str) -> Path:
    return layout.root / _BASES / name / f"{digest}{_ARCHIVE_SUFFIX}"


def delta_path(layout: Layout, digest: str) -> Path:
    return layout.downloads / f"{digest}.delta"


def keep_base(layout: Layout, target: ReleaseTarget) -> None:
    """Keep the committed release's checked archive as the module's only base.

    Called at COMMIT, instead of deleting the download. Idempotent: a
    resumed COMMIT finds the archive moved already.

    Raises:
        OSError: the disk failed (the caller treats it as best effort).
    """
    kept = base_path(layout, target.name, target.digest)
    archive = layout.archive(target.digest)
    make_dirs(kept.parent)
    if archive.is_file():
        os.replace(archive, kept)
        fsync_dir(kept.parent)
        fsync_dir(archive.parent)
    for entry in kept.parent.iterdir():
        if entry != kept:  # at most one base per module: bounded disk
            entry.unlink(missing_ok=True)


def drop_bases(layout: Layout, name: str) -> None:
    """Delete the module's kept archives (delta updates off)."""
    directory = layout.root / _BASES / name
    if directory.is_dir():
        for entry in directory.iterdir():
            entry.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    """What one delta attempt needs."""

    source: DeltaSource
    base: Path  # the kept archive of the installed release
    base_digest: str
    delta: Path
    archive: Path
    max_bytes: int  # of the delta on the wire
    max_tar_bytes: int  # of each tar held in memory while rebuilding
    hook: Callable[[str], None]


class _Unusable(Exception):
    """The delta path cannot give the target's bytes; the full download follows."""


async def try_delta(target: ReleaseTarget, plan: DeltaPlan) -> bool:
    """Leave the target's archive at `plan.archive`, its digest checked, from a
    delta; False (nothing left behind) when the full download must do it.

    Raises:
        asyncio.CancelledError: as any await; the journal resumes DOWNLOAD.
    """
    if not plan.base.is_file():
        return False
    try:
        await _fetch(target, plan)
        plan.hook("delta:fetched")
        await in_thread(_rebuild, target, plan)
    except (ArtifactFetchError, ArtifactError, ReleaseRejectedError, _Unusable, OSError) as exc:
        plan.delta.unlink(missing_ok=True)
        _log.info(
            "update.delta_unused",
            extra={"fields": {"module": target.name, "reason": str(exc)[:300]}},
        )
        return False
    plan.hook("delta:rebuilt")
    plan.delta.unlink(missing_ok=True)
    _log.info("update.delta_used", extra={"fields": {"module": target.name}})
    return True


async def _fetch(target: ReleaseTarget, plan: DeltaPlan) -> None:
    def on_bytes(size: int) -> None:
        if size > plan.max_bytes:
            raise _Unusable(f"the delta exceeds {plan.max_bytes} bytes")

    await in_thread(make_dirs, plan.delta.parent)
    plan.delta.unlink(missing_ok=True)  # small: fetched whole, never resumed
    await plan.source.fetch_delta(target.digest, plan.base_digest, plan.delta, on_bytes=on_bytes)


def _rebuild(target: ReleaseTarget, plan: DeltaPlan) -> None:
    if plan.base.stat().st_size > plan.max_tar_bytes or plan.delta.stat().st_size > plan.max_bytes:
        raise _Unusable("the base or the delta is over its limit")
    base = plan.base.read_bytes()
    if hashlib.sha256(base).hexdigest() != plan.base_digest.removeprefix("sha256:"):
        plan.base.unlink(missing_ok=True)  # rotted on disk: useless from now on
        raise _Unusable("the kept base archive no longer has its digest")
    rebuilt = apply_delta(base, plan.delta.read_bytes(), max_tar_bytes=plan.max_tar_bytes)
    # The digest is checked before the bytes take the archive's name, which
    # means "complete and checked" to every later state.
    check_download(target, "sha256:" + hashlib.sha256(rebuilt).hexdigest())
    write_atomic(plan.archive, rebuilt, mode=0o600, make_parents=False)
