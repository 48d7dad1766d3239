"""Child processes that die with their parent (Linux PR_SET_PDEATHSIG).

An agent's modules and a hub's worker processes must not outlive the process
that started them: after a crash (even SIGKILL) it starts them again, and an
orphan would hold the port or run an old version meanwhile.
"""

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Final


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL: Final = _libc_prctl()
_PR_SET_PDEATHSIG: Final = 1


def can_die_with_parent() -> bool:
    return _PRCTL is not None


def die_with_parent(parent_pid: int, signal_number: int) -> None:
    """In a child right after fork: get `signal_number` when the parent dies.

    Safe between fork and exec (no imports, no locks). If the parent died
    before this took effect, the child exits at once.
    """
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal_number)
    if os.getppid() != parent_pid:
        os._exit(1)
