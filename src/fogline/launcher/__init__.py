"""The agent launcher: start the current agent slot, keep the previous one,
go back to it when a new agent fails its trial.

_pointer   the pointer file (current, previous, trial, failed), written atomically
_launcher  the launcher process (`fogline launcher run`, `python -m fogline.launcher`)

Errors:

    FoglineError
      PointerError    the pointer file exists but cannot be read as one
"""

from ._launcher import Launcher
from ._pointer import (
    BUILTIN,
    POINTER_ENV,
    POINTER_FILE,
    SLOT_ENV,
    Failure,
    Pointer,
    PointerError,
    Slot,
    Trial,
    builtin_slot,
    confirm,
    load_pointer,
    request_switch,
    revert,
    save_pointer,
    slot_is_present,
)

__all__ = [
    "BUILTIN",
    "POINTER_ENV",
    "POINTER_FILE",
    "SLOT_ENV",
    "Failure",
    "Launcher",
    "Pointer",
    "PointerError",
    "Slot",
    "Trial",
    "builtin_slot",
    "confirm",
    "load_pointer",
    "request_switch",
    "revert",
    "save_pointer",
    "slot_is_present",
]
