"""A module's installs on disk, as the states' work leaves them.

Where an install lives, its module file through the parsed copy, the links a
rollback puts back, and the removals after a commit or a failure: the old
installs, the download, the kept delta base. Each blocking step runs off the
event loop (`in_thread`), one step per link or tree. Removals are best
effort: cleanup must not turn a finished update into a failed one.
"""

import logging
from collections.abc import Callable
from pathlib import Path

from fogline.artifact import MODULE_FILE, ModuleSpec, load_module_spec_cached

from ._blocking import in_thread
from ._delta import delta_path, drop_bases, keep_base
from ._journal import Journal, StateFiles
from ._layout import (
    CURRENT,
    PREVIOUS,
    Layout,
    point_link,
    read_link,
    remove_file,
    remove_link,
    remove_tree,
)
from ._models import ReleaseTarget

_log = logging.getLogger("fogline.agent.updater")


def install_path(layout: Layout, target: ReleaseTarget) -> Path:
    """The directory `target` is (or will be) unpacked to."""
    return layout.module_dir(target.name) / target.install_name


def read_spec(files: StateFiles, name: str, install: Path) -> ModuleSpec:
    """The module file of `name`'s install `install`, through its parsed copy (blocking).

    Raises:
        ModuleSpecError: unreadable or invalid.
    """
    return load_module_spec_cached(install / MODULE_FILE, files.spec_cache(name))


async def restore_links(layout: Layout, journal: Journal) -> None:
    """Point `previous` and `current` back where they were before `journal`'s
    update; a first install had neither.

    Raises:
        OSError: a link could not be switched.
    """
    module_dir = layout.module_dir(journal.target.name)
    if journal.prior_previous is not None:
        await in_thread(point_link, module_dir / PREVIOUS, journal.prior_previous)
    else:
        await in_thread(remove_link, module_dir / PREVIOUS)
    if journal.prior is not None:
        await in_thread(point_link, module_dir / CURRENT, journal.prior.install_dir)
    else:  # a first install: nothing to go back to
        await in_thread(remove_link, module_dir / CURRENT)


async def prune_after_commit(layout: Layout, target: ReleaseTarget, *, delta_updates: bool) -> None:
    """Remove what `target`'s commit left behind: the module's other installs
    but `previous`, and the download; with `delta_updates`, keep the archive as
    the module's delta base, else drop its bases. Best effort."""
    module_dir = layout.module_dir(target.name)
    keep = {target.install_name, read_link(module_dir / PREVIOUS)}
    for entry in sorted(module_dir.iterdir()):
        # Only install directories: links and hidden leftovers are not ours to judge here.
        if entry.name not in keep and not entry.name.startswith(".") and _is_real_dir(entry):
            await best_effort(remove_tree, entry)
    if delta_updates:
        # The next update of the module asks for a delta from these bytes.
        await best_effort(lambda _p: keep_base(layout, target), module_dir)
    else:
        await best_effort(lambda _p: drop_bases(layout, target.name), module_dir)
    await drop_download(layout, target)


async def remove_unused_install(layout: Layout, journal: Journal) -> None:
    """Remove the install of `journal`'s target unless a link or the prior
    release names it. Best effort."""
    target = journal.target
    module_dir = layout.module_dir(target.name)
    in_use = {read_link(module_dir / CURRENT), read_link(module_dir / PREVIOUS)}
    if journal.prior is not None:
        in_use.add(journal.prior.install_dir)
    if target.install_name not in in_use:
        await best_effort(remove_tree, install_path(layout, target))


async def drop_download(layout: Layout, target: ReleaseTarget) -> None:
    """Remove `target`'s partial, archive and delta. Best effort."""
    for path in (
        layout.partial(target.digest),
        layout.archive(target.digest),
        delta_path(layout, target.digest),
    ):
        await best_effort(remove_file, path)


async def best_effort(action: Callable[[Path], object], path: Path) -> None:
    """`action(path)` off the loop; an OSError is logged, not raised."""
    # Cleanup must not turn a finished update into a failed one: log and go on.
    try:
        await in_thread(action, path)
    except OSError as exc:
        _log.warning("update.cleanup_failed", extra={"fields": {"path": str(path)}}, exc_info=exc)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()
