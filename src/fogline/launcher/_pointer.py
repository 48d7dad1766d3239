"""The launcher's pointer file: which agent slot runs, which one to go back to.

One small JSON document, replaced whole with fogline._durable.write_atomic
(temporary file, fsync, rename, fsync of the directory), so a power cut at
any moment leaves the old pointer or the new one, never a torn one, and
whichever it is names a slot that exists: the node ends on the old agent or
the new one, never none.

    {"format": 1,
     "current":  {"name": "0.2.0-1a2b3c4d5e6f", "path": "/.../0.2.0-1a2b3c4d5e6f",
                  "version": "0.2.0", "digest": "sha256:..."},
     "previous": {"name": "builtin", "path": null, "version": "0.1.0", "digest": null},
     "trial":    {"starts": 0},          # null once the new agent confirmed
     "failed":   {"slot": {...}, "reason": "...", "at_s": 1765000000.0}}

Who writes it, and when (never two writers at once):

* the running agent, to ask for a switch (`request_switch`), then it exits;
* the agent in trial, after its first accepted report (`confirm`);
* the launcher, only while no agent runs: counting a trial's starts, and
  going back to `previous` (`revert`), which also records why in `failed`.

Errors: `PointerError` (the file exists but cannot be read as a pointer).
"""

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from fogline._durable import write_atomic
from fogline._errors import FoglineError

POINTER_FILE: Final = "pointer.json"
BUILTIN: Final = "builtin"  # the agent installed with the launcher itself
FORMAT: Final = 1
MAX_POINTER_BYTES: Final = 64 * 1024
MAX_REASON_CHARS: Final = 1000
# Environment the launcher gives the agent it starts.
SLOT_ENV: Final = "FOGLINE_AGENT_SLOT"
POINTER_ENV: Final = "FOGLINE_LAUNCHER_POINTER"


class PointerError(FoglineError):
    """The pointer file exists but is not a pointer: path and reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True, slots=True)
class Slot:
    """One agent the launcher can start: `path` is put first on PYTHONPATH
    (None: the launcher's own, builtin, agent)."""

    name: str
    path: str | None
    version: str
    digest: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.path is None


@dataclass(frozen=True, slots=True)
class Trial:
    """A switched-to agent that has not confirmed yet; `starts` counts its starts."""

    starts: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    """The last agent the launcher went back from, and why."""

    slot: Slot
    reason: str
    at_s: float


@dataclass(frozen=True, slots=True)
class Pointer:
    current: Slot
    previous: Slot | None = None
    trial: Trial | None = None
    failed: Failure | None = None


def builtin_slot(version: str) -> Slot:
    return Slot(BUILTIN, None, version)


def load_pointer(path: Path, *, builtin_version: str) -> Pointer:
    """The pointer at `path`; a missing file means the builtin agent runs.

    Raises:
        PointerError: the file is unreadable, too large or malformed.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_POINTER_BYTES + 1)
    except FileNotFoundError:
        return Pointer(builtin_slot(builtin_version))
    except OSError as exc:
        raise PointerError(path, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_POINTER_BYTES:
        raise PointerError(path, f"larger than {MAX_POINTER_BYTES} bytes")
    try:
        return _pointer_from(json.loads(data))
    except (ValueError, TypeError, KeyError) as exc:
        raise PointerError(path, f"not a pointer: {type(exc).__name__}: {exc}") from exc


def save_pointer(path: Path, pointer: Pointer) -> None:
    """Replace the pointer at `path` durably (old or new after a power cut).

    Raises:
        OSError: the directory is not writable; the old pointer stays.
    """
    document = {
        "format": FORMAT,
        "current": _slot_json(pointer.current),
        "previous": _slot_json(pointer.previous) if pointer.previous else None,
        "trial": {"starts": pointer.trial.starts} if pointer.trial else None,
        "failed": None
        if pointer.failed is None
        else {
            "slot": _slot_json(pointer.failed.slot),
            "reason": pointer.failed.reason,
            "at_s": pointer.failed.at_s,
        },
    }
    write_atomic(path, json.dumps(document, indent=1).encode(), mode=0o600)


def request_switch(path: Path, running: Slot, new: Slot, *, builtin_version: str) -> Pointer:
    """Point at `new` on trial, keeping `running` to go back to (the agent, before it exits).

    Raises:
        PointerError, OSError: as load_pointer and save_pointer.
    """
    load_pointer(path, builtin_version=builtin_version)  # refuse to replace what we cannot read
    # `failed` is dropped: the agent asking has rolled back any failure it
    # named at its start (a stale one must not undo this release if it comes back).
    pointer = Pointer(current=new, previous=running, trial=Trial())
    save_pointer(path, pointer)
    return pointer


def confirm(path: Path, slot_name: str, *, builtin_version: str) -> bool:
    """End the trial of `slot_name` (the agent in trial, once it reported); True if it did.

    Raises:
        PointerError, OSError: as load_pointer and save_pointer.
    """
    pointer = load_pointer(path, builtin_version=builtin_version)
    if pointer.trial is None or pointer.current.name != slot_name:
        return False
    save_pointer(path, replace(pointer, trial=None))
    return True


def revert(pointer: Pointer, reason: str, *, builtin_version: str) -> Pointer:
    """Go back to `previous`, recording why the current slot failed.

    With nothing to go back to, the builtin agent (the launcher's own) runs.
    """
    failed = Failure(pointer.current, reason[:MAX_REASON_CHARS], time.time())
    back = pointer.previous
    if back is None or back.name == pointer.current.name:
        back = builtin_slot(builtin_version)  # the launcher's own agent: always there
    return Pointer(current=back, previous=None, trial=None, failed=failed)


def slot_is_present(slot: Slot) -> bool:
    """Whether the slot's agent is on disk (the builtin one always is)."""
    if slot.path is None:
        return True
    return os.path.isfile(os.path.join(slot.path, "fogline", "__main__.py"))


def _slot_json(slot: Slot) -> dict[str, Any]:
    return {"name": slot.name, "path": slot.path, "version": slot.version, "digest": slot.digest}


def _slot_from(data: Any) -> Slot:
    if not isinstance(data, dict):
        raise TypeError("a slot must be an object")
    name, path, version, digest = data["name"], data["path"], data["version"], data.get("digest")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"slot name {name!r}")
    if path is not None and not (isinstance(path, str) and os.path.isabs(path)):
        raise ValueError(f"slot path {path!r} must be absolute or null")
    if not isinstance(version, str) or (digest is not None and not isinstance(digest, str)):
        raise TypeError("slot version and digest must be strings")
    return Slot(name, path, version, digest)


def _pointer_from(data: Any) -> Pointer:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected an object with format {FORMAT}")
    trial = data.get("trial")
    if trial is not None and not (isinstance(trial.get("starts"), int) and trial["starts"] >= 0):
        raise ValueError("trial.starts must be an integer >= 0")
    failed = data.get("failed")
    return Pointer(
        current=_slot_from(data["current"]),
        previous=_slot_from(data["previous"]) if data.get("previous") is not None else None,
        trial=Trial(trial["starts"]) if trial is not None else None,
        failed=None
        if failed is None
        else Failure(_slot_from(failed["slot"]), str(failed["reason"]), float(failed["at_s"])),
    )
