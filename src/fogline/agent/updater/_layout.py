"""Where releases live on disk, and the two crash-safe operations on them.

    <root>/downloads/<digest>.partial    a download in progress (resumable)
    <root>/downloads/<digest>.tar.zst    a complete download whose sha256 matched
    <root>/modules/<name>/<version>-<digest12>/   one install, complete or absent
    <root>/modules/<name>/current  -> <version>-<digest12>   the active install
    <root>/modules/<name>/previous -> <version>-<digest12>   the one to roll back to

Links are switched by renaming a new symlink over the old one, so `current`
always names a whole install. Installs are deleted by renaming them to a
hidden `.trash-` name first: a crash mid-delete leaves a hidden leftover,
never a half-deleted directory under a name the updater trusts.
"""

import os
import secrets
from pathlib import Path
from typing import Final

from fogline._durable import fsync_dir
from fogline.artifact import delete_tree, find_unpack_leftovers

CURRENT: Final = "current"
PREVIOUS: Final = "previous"
_TRASH_PREFIX: Final = ".trash-"


class Layout:
    """The paths of one updater root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.downloads = self.root / "downloads"
        self.modules = self.root / "modules"

    def module_dir(self, module: str) -> Path:
        return self.modules / module

    def partial(self, digest: str) -> Path:
        return self.downloads / f"{digest}.partial"

    def archive(self, digest: str) -> Path:
        return self.downloads / f"{digest}.tar.zst"

    def module_names(self) -> list[str]:
        if not self.modules.is_dir():
            return []
        return sorted(p.name for p in self.modules.iterdir() if p.is_dir())


def read_link(link: Path) -> str | None:
    """The install name `link` points to, or None when there is no link."""
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    # Our links are always one bare name; anything else was not written by us.
    return target if "/" not in target else None


def point_link(link: Path, install_name: str) -> None:
    """Make `link` point to `install_name`, atomically and durably."""
    if read_link(link) == install_name:
        return
    temp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(install_name, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)


def remove_link(link: Path) -> None:
    """Remove `link` (durably); no error if it is already gone."""
    try:
        link.unlink()
    except FileNotFoundError:
        return
    fsync_dir(link.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory so that a crash midway leaves only a hidden leftover."""
    if not os.path.lexists(path):
        return
    trash = path.with_name(f"{_TRASH_PREFIX}{path.name}.{secrets.token_hex(4)}")
    os.rename(path, trash)
    fsync_dir(path.parent)
    # Iterative, never through a symlink: an install's tree is an archive's
    # shape, and a module may have deepened it since. What fails to go stays
    # hidden and is swept again at the next start.
    delete_tree(trash)


def remove_file(path: Path) -> None:
    path.unlink(missing_ok=True)


def sweep_leftovers(module_dir: Path) -> list[Path]:
    """Delete what crashed unpacks, deletes and link switches left; return what went.

    Only call while no update of this module runs.

    Raises:
        OSError: a leftover cannot be deleted (it stays, for the next sweep).
    """
    if not module_dir.is_dir():
        return []
    found = list(find_unpack_leftovers(module_dir))
    for entry in module_dir.iterdir():
        is_trash = entry.name.startswith(_TRASH_PREFIX)
        is_link_temp = entry.name.startswith(".") and entry.name.endswith(".tmp")
        if (is_trash or is_link_temp) and entry not in found:
            found.append(entry)
    for path in found:
        delete_tree(path)  # a link or a file is unlinked, a directory emptied at any depth
    return sorted(found)
