"""What a release archive may contain, shared by build (refuse to write it) and
unpack (refuse to read it), so both sides apply one rule set.

An archive is a zstd-compressed PAX tar whose first entry is
`fogline-module.yaml`, followed by regular files, directories and relative
symlinks that stay inside the release. Nothing else: no hard links (they can
alias a file outside the tree), no devices or FIFOs, no absolute or `..`
paths.
"""

from typing import Final

# Canonical modes: the archive records only "executable or not".
FILE_MODE: Final = 0o644
EXEC_MODE: Final = 0o755
DIR_MODE: Final = 0o755
LINK_MODE: Final = 0o777

# The compression level is part of the format: changing it changes every
# digest. 10 compresses models well without making builds crawl.
ZSTD_LEVEL: Final = 10
# Level 10 uses a window of a few MiB; refusing larger windows on unpack
# bounds decoder memory on small nodes whatever a hostile frame asks for.
ZSTD_MAX_WINDOW: Final = 1 << 25

MAX_PATH_BYTES: Final = 4096
MAX_COMPONENT_BYTES: Final = 255
# Deeper than any real module tree (a node_modules tree nests about 20
# levels), and shallow enough that whoever walks an installed release with a
# recursive tool (Python 3.11's shutil.rmtree and os.walk recurse once per
# level, and keep a descriptor per level) stays far from recursion and
# descriptor limits. Without it 4096 path bytes allow 2048 levels.
MAX_PATH_DEPTH: Final = 64

# What a node unpacks at most by default (its UpdateLimits), and so what the
# hub's check at push allows: an archive the hub accepts, a node accepts.
DEFAULT_MAX_INSTALL_BYTES: Final = 4 << 30
DEFAULT_MAX_INSTALL_FILES: Final = 100_000


def member_parts(name: str) -> tuple[str, ...]:
    """Split an archive member name into its path components.

    Raises:
        ValueError: empty, absolute, `..` or `.` components, NUL, too long,
            deeper than MAX_PATH_DEPTH components, or not UTF-8.
    """
    if not name:
        raise ValueError("empty path")
    if "\x00" in name:
        raise ValueError("path contains a NUL character")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("path is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise ValueError(f"path longer than {MAX_PATH_BYTES} bytes")
    if name.startswith("/"):
        raise ValueError("absolute path")
    parts = name.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise ValueError(f"path deeper than {MAX_PATH_DEPTH} components ({len(parts)})")
    for part in parts:
        if part == "..":
            raise ValueError("path traversal: '..' component")
        if part in ("", "."):
            raise ValueError("empty or '.' path component (paths must be canonical)")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise ValueError(f"path component longer than {MAX_COMPONENT_BYTES} bytes")
    return tuple(parts)


def check_link_target(parts: tuple[str, ...], target: str) -> None:
    """Check that a symlink at `parts` pointing to `target` stays inside the release.

    This is the textual check; unpack also resolves every link on disk once
    all entries exist, which catches chains such as `a -> .` + `b -> a/..`.

    Raises:
        ValueError: empty, absolute, NUL, too long, or climbing above the release root.
    """
    if not target:
        raise ValueError("empty symlink target")
    if "\x00" in target:
        raise ValueError("symlink target contains a NUL character")
    if len(target.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise ValueError(f"symlink target longer than {MAX_PATH_BYTES} bytes")
    if target.startswith("/"):
        raise ValueError(f"symlink to an absolute path {target!r}")
    stack = list(parts[:-1])
    for component in target.split("/"):
        if component == "..":
            if not stack:
                raise ValueError(f"symlink target {target!r} points outside the release")
            stack.pop()
        elif component not in ("", "."):
            stack.append(component)


def canonical_mode(mode: int) -> int:
    """0755 when any execute bit is set, else 0644: the only modes an archive carries."""
    return EXEC_MODE if mode & 0o111 else FILE_MODE
