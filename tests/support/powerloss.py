"""Power-loss proof, in the spirit of ALICE and CrashMonkey: record what a
component does to its files, then rebuild every file system a power cut could
have left, and run the component's recovery on each.

Recording (`recording(root)`): the os calls our durable code goes through
(fsync, fdatasync, rename, replace, link, symlink, unlink, remove, mkdir,
rmdir, truncate, ftruncate) are wrapped for the duration. Around each call
the sandbox `root` is scanned (names, inodes, bytes), and the difference with
the previous scan is logged as one *change*: every directory entry and every
file's bytes that differ, in one atomic group (a rename is one group: it is
atomic on every file system we run on). Writes through os.write or a file
object need no wrapping: they show up in the next scan. An fsync is logged
as a *sync* of the inode behind the descriptor.

The model of the disk (POSIX, conservative; documented in docs/architecture.md ("Power loss")):

* A file's bytes are durable once the file was fsynced; bytes written since
  may be lost. A file never fsynced reads back empty.
* A name (create, rename, link, unlink, mkdir, rmdir) is durable once its
  directory was fsynced. fsync of a file does not make its name durable,
  and a new directory's own name needs an fsync of its parent.
* A symlink's target is written with its inode: it is never torn.
* What is not durable may or may not have reached the disk, in any order.

At each crash point (after every logged event) the replayer builds:
`durable` (only what was made durable), `all` (everything: the SIGKILL
state), `names` (every pending name change, none of the pending bytes:
delayed allocation's zero-length files), and with `full=True` also `torn`
(pending bytes cut halfway through what was appended) and the reorderings:
with at most six pending changes every subset of them, else every in-order
prefix and every state that drops one while keeping the later ones. With
`recording(writes=True)` each os.write is a crash point too. Identical file
systems are checked once; the count of distinct states is what the benchmark
prints. `explore(twice=True)` also records each recovery and checks every
crash state of it: a second power cut while recovering from the first.
While checks run, fsync is a no-op: the model, not the disk, decides what
survived, and the checks then cost the same on any file system.

SQLite's own files are not seen at this level (its writes and fsyncs do not
go through Python): a scenario calls `Recorder.sync_path` for the database
and its WAL where SQLite's synchronous=FULL promises they are durable (when
a commit returns), and checks that setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# Keys of the model: ("e", dir id, name) -> inode id (or None: no such name);
# ("d", inode id) -> the file's bytes.
Key = tuple[Any, ...]

_PATCHED: Final = (
    "fsync",
    "fdatasync",
    "rename",
    "replace",
    "link",
    "symlink",
    "unlink",
    "remove",
    "mkdir",
    "rmdir",
    "truncate",
    "ftruncate",
)
_MAX_VARIANTS: Final = 16  # in-order prefixes and single drops per crash point, each
_EXHAUSTIVE: Final = 6  # up to this many pending changes, every subset is tried


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    label: str
    items: tuple[tuple[Key, Any], ...]


@dataclass(frozen=True, slots=True)
class Sync:
    inode: int
    label: str


@dataclass(frozen=True, slots=True)
class Mark:
    label: str


Event = Change | Sync | Mark


class Recorder:
    """The log of one run over the sandbox `root` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.lock = threading.RLock()
        self.events: list[Event] = []
        self.kinds: dict[int, tuple[str, int]] = {0: ("d", 0o755)}  # inode id -> (kind, mode)
        self.links: dict[int, str] = {}  # symlink inode id -> its target
        self._present: dict[int, int] = {}  # real st_ino -> inode id, as of the last scan
        self._cache: dict[int, tuple[tuple[int, int, int], bytes]] = {}
        self._next_id = 1
        self._seq = 0
        self._busy = False
        self.initial: dict[Key, Any] = self._scan()
        self._volatile = dict(self.initial)

    # -- what the wrappers and scenarios call --------------------------------

    def observe(self, label: str) -> None:
        """Log what changed since the last scan as one atomic change."""
        with self.lock:
            current = self._scan()
            items = [
                (key, current.get(key))
                for key in sorted(current.keys() | self._volatile.keys(), key=repr)
                if current.get(key) != self._volatile.get(key)
                # A gone file's bytes are not a change: its names are.
                and not (key[0] == "d" and key not in current)
            ]
            self._volatile = current
            if items:
                self._seq += 1
                self.events.append(Change(self._seq, label, tuple(items)))

    def sync_fd(self, fd: int, label: str) -> None:
        with self.lock:
            inode = self._present.get(os.fstat(fd).st_ino)
            if inode is not None:
                self.events.append(Sync(inode, label))

    def sync_path(self, path: Path) -> None:
        """Log an fsync of `path` done where Python does not see it (SQLite)."""
        with self.lock:
            self.observe(f"before sync of {path.name}")
            try:
                ino = os.lstat(path).st_ino
            except FileNotFoundError:
                return
            inode = self._present.get(ino)
            if inode is not None:
                self.events.append(Sync(inode, f"sync {path.name}"))

    def mark(self, label: str) -> None:
        """A point the component acknowledged something: checks see it in `marks`."""
        with self.lock:
            self.observe(f"before mark {label}")
            self.events.append(Mark(label))

    # -- scanning -------------------------------------------------------------

    def _inode(self, ino: int, seen: dict[int, int]) -> int:
        if ino in seen:
            return seen[ino]  # a second name of the same inode (a hard link)
        # An inode number absent from the last scan is a new inode, even if
        # the kernel reused the number of one deleted meanwhile.
        inode = self._present.get(ino)
        if inode is None:
            inode, self._next_id = self._next_id, self._next_id + 1
        seen[ino] = inode
        return inode

    def _scan(self) -> dict[Key, Any]:
        found: dict[Key, Any] = {}
        seen: dict[int, int] = {os.lstat(self.root).st_ino: 0}
        pending: list[tuple[str, int]] = [(os.fspath(self.root), 0)]
        while pending:
            path, dir_id = pending.pop()
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                inode = self._inode(st.st_ino, seen)
                found[("e", dir_id, entry.name)] = inode
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISDIR(st.st_mode):
                    self.kinds[inode] = ("d", mode)
                    pending.append((entry.path, inode))
                elif stat.S_ISLNK(st.st_mode):
                    self.kinds[inode] = ("l", mode)
                    self.links.setdefault(inode, os.readlink(entry.path))
                elif stat.S_ISREG(st.st_mode):
                    self.kinds[inode] = ("f", mode)
                    found[("d", inode)] = self._read(inode, entry.path, st)
        self._present = seen
        return found

    def _read(self, inode: int, path: str, st: os.stat_result) -> bytes:
        version = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._cache.get(inode)
        if cached is not None and cached[0] == version:
            return cached[1]
        with open(path, "rb") as fh:
            data = fh.read()
        self._cache[inode] = (version, data)
        return data


@contextlib.contextmanager
def recording(root: Path, *, writes: bool = False) -> Iterator[Recorder]:
    """Record every file operation under `root` until the block ends; with
    `writes`, each os.write is a crash point of its own too (slower)."""
    recorder = Recorder(root)
    names = _PATCHED + (("write",) if writes else ())
    originals = {name: getattr(os, name) for name in names}

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with recorder.lock:
                if recorder._busy:
                    return original(*args, **kwargs)
                recorder._busy = True
                try:
                    shown = args[:1] if name == "write" else args
                    label = f"{name}({', '.join(_short(a) for a in shown)})"
                    recorder.observe(f"before {label}")
                    if name in ("fsync", "fdatasync"):
                        result = original(*args, **kwargs)
                        fd = args[0] if isinstance(args[0], int) else args[0].fileno()
                        recorder.sync_fd(fd, label)
                        return result
                    try:
                        return original(*args, **kwargs)
                    finally:
                        recorder.observe(label)
                finally:
                    recorder._busy = False

        return wrapper

    for name, original in originals.items():
        setattr(os, name, wrap(name, original))
    try:
        yield recorder
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
    recorder.observe("end")


def _short(arg: Any) -> str:
    text = os.fspath(arg) if isinstance(arg, str | os.PathLike) else repr(arg)
    return str(text).rsplit("/", 2)[-1] if "/" in str(text) else str(text)


# -- replaying: the file systems a power cut could leave ------------------------


@dataclass(frozen=True, slots=True)
class CrashState:
    """One file system a power cut could leave, and what was acknowledged before it."""

    point: int  # crash after this many events
    kind: str  # durable, all, names, torn, prefix-N, drop-N
    after: str  # the last event before the cut
    marks: frozenset[str]
    values: dict[Key, Any]


def crash_states(recorder: Recorder, *, full: bool) -> Iterator[CrashState]:
    """Every crash state of the recorded run (see the module docstring)."""
    volatile = dict(recorder.initial)
    vseq: dict[Key, int] = {}
    durable = dict(recorder.initial)
    dseq: dict[Key, int] = {}
    changes: list[Change] = []
    marks: set[str] = set()
    for point, event in enumerate(recorder.events, start=1):
        if isinstance(event, Change):
            changes.append(event)
            for key, value in event.items:
                vseq[key] = event.seq
                if value is None:
                    volatile.pop(key, None)
                else:
                    volatile[key] = value
        elif isinstance(event, Sync):
            _persist(recorder, event.inode, volatile, vseq, durable, dseq)
        else:
            marks.add(event.label)
        pending = [c for c in changes if any(dseq.get(key, 0) < c.seq for key, _ in c.items)]
        changes = pending  # what is durable stays durable
        after = event.label if not isinstance(event, Mark) else f"mark {event.label}"
        frozen = frozenset(marks)
        for kind, chosen, mode in _variants(pending, full=full):
            yield CrashState(point, kind, after, frozen, _build(durable, dseq, chosen, mode))


def _variants(pending: list[Change], *, full: bool) -> Iterator[tuple[str, list[Change], str]]:
    """(kind, the pending changes that reached the disk, how their bytes did)."""
    yield "durable", [], "all"
    if not pending:
        return
    yield "all", pending, "all"
    yield "names", pending, "names"
    if not full:
        return
    yield "torn", pending, "torn"
    if len(pending) <= _EXHAUSTIVE:
        # Few enough to try every order the disk could have kept: each
        # subset of the pending changes (names and bytes alike) landed.
        for mask in range(1, (1 << len(pending)) - 1):
            chosen = [c for i, c in enumerate(pending) if mask >> i & 1]
            yield f"subset-{mask:b}", chosen, "all"
        return
    for j in _spread(range(1, len(pending))):
        yield f"prefix-{j}", pending[:j], "all"
    if len(pending) > 1:
        for j in _spread(range(len(pending) - 1)):
            yield f"drop-{j}", pending[:j] + pending[j + 1 :], "all"


def _spread(indices: range) -> list[int]:
    if len(indices) <= _MAX_VARIANTS:
        return list(indices)
    step = len(indices) / _MAX_VARIANTS
    return sorted({indices[int(i * step)] for i in range(_MAX_VARIANTS)} | {indices[-1]})


def _persist(
    recorder: Recorder,
    inode: int,
    volatile: dict[Key, Any],
    vseq: dict[Key, int],
    durable: dict[Key, Any],
    dseq: dict[Key, int],
) -> None:
    kind = recorder.kinds.get(inode, ("?", 0))[0]
    if kind == "f":
        keys = [("d", inode)]
    elif kind == "d":
        keys = [k for k in vseq.keys() | durable.keys() if k[0] == "e" and k[1] == inode]
    else:
        return
    for key in keys:
        if key in volatile:
            durable[key] = volatile[key]
        else:
            durable.pop(key, None)
        dseq[key] = vseq.get(key, 0)


def _build(
    durable: dict[Key, Any], dseq: dict[Key, int], chosen: list[Change], mode: str
) -> dict[Key, Any]:
    values = dict(durable)
    for change in chosen:
        for key, value in change.items:
            if dseq.get(key, 0) >= change.seq:
                continue
            if key[0] == "d" and mode == "names":
                continue
            if key[0] == "d" and mode == "torn":
                value = _torn(values.get(key, b""), value)
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
    return values


def _torn(old: bytes, new: bytes) -> bytes:
    """`new` cut halfway through what it added to `old` (or halfway, if rewritten)."""
    if new.startswith(old):
        return new[: len(old) + (len(new) - len(old)) // 2]
    return new[: len(new) // 2]


def _tree(recorder: Recorder, values: dict[Key, Any]) -> dict[int, list[tuple[str, int]]]:
    children: dict[int, list[tuple[str, int]]] = {}
    for key, value in values.items():
        if key[0] == "e":
            children.setdefault(key[1], []).append((key[2], value))
    for entries in children.values():
        entries.sort()
    return children


def signature(recorder: Recorder, crash: CrashState) -> str:
    """A digest of the file system `crash` leaves (what a check could see)."""
    digest = hashlib.sha256()
    for path, kind, mode, data in _walk(recorder, crash.values):
        digest.update(f"{path}\0{kind}\0{mode:o}\0".encode())
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _walk(recorder: Recorder, values: dict[Key, Any]) -> Iterator[tuple[str, str, int, bytes]]:
    children = _tree(recorder, values)
    pending: list[tuple[int, str]] = [(0, "")]
    visited: set[int] = set()
    while pending:
        dir_id, prefix = pending.pop()
        if dir_id in visited:  # one directory under two names: a torn cross-dir rename
            continue
        visited.add(dir_id)
        for name, inode in children.get(dir_id, []):
            kind, mode = recorder.kinds[inode]
            path = f"{prefix}/{name}"
            if kind == "d":
                yield path, kind, mode, b""
                pending.append((inode, path))
            elif kind == "l":
                yield path, kind, mode, recorder.links[inode].encode()
            else:
                yield path, kind, mode, values.get(("d", inode), b"")


def materialize(recorder: Recorder, crash: CrashState, dest: Path) -> None:
    """Write the file system of `crash` at `dest` (which must not exist)."""
    dest.mkdir(parents=True)
    modes: list[tuple[Path, int]] = []
    for path, kind, mode, data in _walk(recorder, crash.values):
        target = dest / path.lstrip("/")
        if kind == "d":
            target.mkdir()
            modes.append((target, mode))
        elif kind == "l":
            target.symlink_to(data.decode())
        else:
            target.write_bytes(data)
            target.chmod(mode)
    for directory, mode in reversed(modes):
        directory.chmod(mode | 0o700)


def scratch_root() -> Path | None:
    """A tmpfs to explore on when there is one (fsync costs nothing there: the
    model, not the disk, decides what survives); None: the default temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


# -- exploring -------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    after: str
    problems: list[str]


@dataclass
class Exploration:
    name: str
    events: int = 0
    states: int = 0  # crash states built
    distinct: int = 0  # distinct (file system, acknowledged) pairs checked
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.name}: {self.events} events, {self.states} crash states, "
            f"{self.distinct} distinct checked, {len(self.findings)} broken "
            f"({self.seconds:.1f} s)"
        )


def explore(
    name: str,
    recorder: Recorder,
    check: Callable[[Path, frozenset[str]], list[str]],
    work: Path,
    *,
    full: bool,
    twice: bool = False,
) -> Exploration:
    """Run `check(image_dir, acknowledged)` on every distinct crash state.

    With `twice`, the check's own recovery is recorded too, and every crash
    state of it (the fast variants) is checked again: a second power cut
    during the recovery from the first.
    """
    with _fsync_free():
        return _explore(name, recorder, check, work, full=full, twice=twice)


@contextlib.contextmanager
def _fsync_free() -> Iterator[None]:
    originals = os.fsync, os.fdatasync

    def nothing(fd: Any) -> None:
        return None

    os.fsync = os.fdatasync = nothing
    try:
        yield
    finally:
        os.fsync, os.fdatasync = originals


def _explore(
    name: str,
    recorder: Recorder,
    check: Callable[[Path, frozenset[str]], list[str]],
    work: Path,
    *,
    full: bool,
    twice: bool,
) -> Exploration:
    started = time.monotonic()
    result = Exploration(name, events=len(recorder.events))
    seen: set[tuple[str, frozenset[str]]] = set()

    def run(image: Path, marks: frozenset[str], kind: str, after: str) -> bool:
        try:
            problems = check(image, marks)
        except Exception as exc:  # a recovery that raises is a broken node
            problems = [f"recovery raised {type(exc).__name__}: {exc}"]
        if problems:
            result.findings.append(Finding(kind, after, problems))
        return not problems

    for crash in crash_states(recorder, full=full):
        result.states += 1
        key = (signature(recorder, crash), crash.marks)
        if key in seen:
            continue
        seen.add(key)
        result.distinct += 1
        image = work / f"state-{result.distinct}"
        materialize(recorder, crash, image)
        if not twice:
            run(image, crash.marks, crash.kind, crash.after)
            shutil.rmtree(image, ignore_errors=True)
            continue
        with recording(image) as again:
            fine = run(image, crash.marks, crash.kind, crash.after)
        shutil.rmtree(image, ignore_errors=True)
        if not fine:
            continue
        for second in crash_states(again, full=False):
            result.states += 1
            key = (signature(again, second), crash.marks)
            if key in seen:
                continue
            seen.add(key)
            result.distinct += 1
            image = work / f"state-{result.distinct}"
            materialize(again, second, image)
            kind = f"{crash.kind}, then {second.kind} in recovery"
            run(image, crash.marks, kind, f"{crash.after}; then {second.after}")
            shutil.rmtree(image, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result
