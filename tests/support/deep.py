"""Directory trees deeper than any path can name, made directly on disk.

A 5,000-level tree has paths of 10,000 bytes, over PATH_MAX: it is built
with one directory descriptor at a time and names relative to it, as a
hostile module process (or a crashed unpack) could leave it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fogline.artifact import delete_tree

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make_deep_tree(root: Path, depth: int, *, name: str = "d", files_every: int = 1) -> None:
    """`root/d/d/.../d` (`depth` levels), a file `f` in every `files_every`-th
    level and a symlink `l -> f` in the first one."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIR)
    try:
        for level in range(depth):
            os.mkdir(name, dir_fd=fd)
            if level % files_every == 0:
                file_fd = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
                os.write(file_fd, f"level {level}\n".encode())
                os.close(file_fd)
            if level == 0:
                os.symlink("f", "l", dir_fd=fd)
            child = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@contextmanager
def deep_tree(root: Path, depth: int, **kwargs: Any) -> Iterator[Path]:
    """`make_deep_tree`, deleted again on exit whatever happened: pytest's own
    clean-up of old temp dirs uses shutil.rmtree, which such a tree crashes."""
    try:
        make_deep_tree(root, depth, **kwargs)
        yield root
    finally:
        delete_tree(root)
