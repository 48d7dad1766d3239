"""Crash-safe file writes for the node's state: temp file, fsync, rename, fsync dir."""

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644, group: int | None = None) -> None:
    """Replace `path` with `data` so that a power cut leaves the old or the new
    file, never a torn one.

    `mode` is masked by the process's umask, unless `group` is given: then
    the file gets that group and exactly `mode` (for a file another user
    must read, such as a module's config), set before it takes its name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if group is not None:
            os.fchown(fd, -1, group)
            os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    # The rename itself is only durable once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
