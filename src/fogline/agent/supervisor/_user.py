"""The user modules run as, and what that user can reach on disk.

A module running as the agent's user can read everything the agent can,
the device's private key included. An agent running as root therefore runs
its modules as another, unprivileged user (`--module-user`, default
`nobody`), with that user's own groups.

Running as another user fails in confusing ways when the user cannot reach
the command or the module's directories (`Permission denied` from exec, or
an interpreter that cannot load its library). `access_problem` finds the
first path component in the way before the module is started, so the
error names it and the fix.
"""

import contextlib
import grp
import os
import pwd
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_ROOT_MODULE_USER: Final = "nobody"
_R, _W, _X = 4, 2, 1
_SHEBANG_MAX: Final = 256


@dataclass(frozen=True, slots=True)
class ModuleUser:
    """A local user modules run as: its name, uid, primary gid and every group it is in."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @property
    def is_agent_user(self) -> bool:
        """True when modules run as the agent's own user: no isolation from it."""
        return self.uid == os.geteuid()


def resolve_module_user(wanted: str | None) -> ModuleUser:
    """The user modules run as: `wanted` (a name or a uid), else the default.

    The default is `nobody` when the agent runs as root, else the agent's own
    user (only root may start processes as another user).

    Raises:
        ValueError: no such user, or another user than the agent's own is
            asked for while the agent does not run as root.
    """
    is_root = os.geteuid() == 0
    if wanted is None:
        wanted = DEFAULT_ROOT_MODULE_USER if is_root else str(os.geteuid())
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except (KeyError, OverflowError):
        raise ValueError(f"no such user: {wanted!r}") from None
    if not is_root and entry.pw_uid != os.geteuid():
        raise ValueError(
            f"running modules as {entry.pw_name!r} needs the agent to run as root "
            f"(it runs as uid {os.geteuid()})"
        )
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return ModuleUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def spawn_as(user: "ModuleUser | None") -> dict[str, Any]:
    """subprocess arguments that start a process as `user` (nothing for the agent's own)."""
    if user is None or user.is_agent_user:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def prepare_data_dir(path: Path, user: ModuleUser) -> None:
    """Make `path` the module's own directory: created 0700, owned by `user`.

    Its parent stays the agent's (mode 0711: others may pass, not list or
    write), so the module cannot swap its directory for a link to something
    of the agent's; and the agent never writes inside it.

    Raises:
        OSError: the directory cannot be created or handed over, or is not a
            directory (a link planted there is refused, never followed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o711)  # noqa: S103 - traversable, not listable: on purpose
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path}: not a directory")
    if (info.st_uid, info.st_gid) != (user.uid, user.gid):
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def _owner(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{stat.filemode(info.st_mode)} {user}:{group}"


def _allows(info: os.stat_result, user: ModuleUser, bits: int) -> bool:
    """Whether the permission bits of `info` grant `bits` to `user` (ACLs are not read)."""
    if user.uid == 0:
        return True
    if info.st_uid == user.uid:
        granted = info.st_mode >> 6
    elif info.st_gid in user.groups:
        granted = info.st_mode >> 3
    else:
        granted = info.st_mode
    return (granted & bits) == bits


def _blocked(path: Path, user: ModuleUser, bits: int) -> str | None:
    """The first reason `user` cannot use `path` with `bits`, walking down from /."""
    path = Path(os.path.abspath(path))
    for candidate in (path, Path(os.path.realpath(path))):
        for parent in reversed(candidate.parents):
            try:
                info = os.stat(parent)
            except OSError:
                return None  # missing: exec will say so better than we can
            if not _allows(info, user, _X):
                return f"{parent} is {_owner(info)}"
    real = Path(os.path.realpath(path))
    try:
        info = os.stat(real)
    except OSError:
        return None
    if not _allows(info, user, bits):
        what = "".join(c for c, b in (("r", _R), ("w", _W), ("x", _X)) if bits & b)
        return f"{real} is {_owner(info)} (needs {what})"
    return None


def _interpreter(path: Path) -> Path | None:
    """The absolute interpreter of a `#!` script, if `path` is one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SHEBANG_MAX)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or not words[0].startswith(b"/"):
        return None
    return Path(os.fsdecode(words[0]))


def _program(argv0: str, workdir: Path, env: Mapping[str, str]) -> list[Path]:
    """Where exec would look for `argv0`, in order (PATH search as execvp does it)."""
    if "/" in argv0:
        return [workdir / argv0]  # relative to the module's cwd, or absolute
    search = env.get("PATH") or os.defpath
    return [Path(entry or ".") / argv0 for entry in search.split(os.pathsep)]


def access_problem(
    user: ModuleUser,
    *,
    command: str,
    workdir: Path,
    env: Mapping[str, str],
    readable: Iterable[Path] = (),
    writable: Iterable[Path] = (),
) -> str | None:
    """Why `user` cannot run `command` in `workdir` (or use the other paths), or None.

    For a command found on PATH, the first candidate the user can execute
    wins, as with execvp; the error names the first one that exists when
    none is usable. A `#!` script's interpreter is checked too.
    """
    checks: list[tuple[Path, int]] = [(workdir, _X)]  # to chdir; its files are checked by use
    checks += [(path, _R) for path in readable]
    checks += [(path, _R | _W | _X) for path in writable]
    for path, bits in checks:
        why = _blocked(path, user, bits)
        if why:
            return f"cannot reach {path}: {why}"
    blocked: str | None = None
    for candidate in _program(command, workdir, env):
        if not candidate.is_file():
            continue
        why = _blocked(candidate, user, _X)
        interpreter = _interpreter(candidate) if why is None else None
        if interpreter is not None:
            why = _blocked(candidate, user, _R | _X) or _blocked(interpreter, user, _X)
        if why is None:
            return None
        blocked = blocked or f"cannot run {candidate}: {why}"
    return blocked  # None when nothing exists at all: exec's own error says so
