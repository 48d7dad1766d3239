"""Crash-point injection for fault tests: kill the agent at a named point.

The updater calls its `crash_hook(point)` at every point listed by
`crash_points()`. `crash_hook_from_env()` turns `FOGLINE_FAULT_CRASH_AT=
<point>[:<n>]` into a hook that SIGKILLs the process at the n-th time the
point is reached (default: the first): as far as the files know, a power cut.
"""

import os
import signal
from collections.abc import Callable
from typing import Final

from ._states import State

CRASH_ENV: Final = "FOGLINE_FAULT_CRASH_AT"

# Points inside states, in the order an update reaches them.
_INNER_POINTS: Final = (
    "download:chunk",  # after each chunk is written to the partial file
    "delta:fetched",  # a delta is on disk (downloads/<digest>.delta); nothing rebuilt
    "delta:rebuilt",  # the archive was rebuilt from it, digest checked; the delta not deleted
    "download:complete",  # the partial is renamed to the archive; the journal still says DOWNLOAD
    "unpack",  # just before unpack_release
    "install:unpacked",  # the install directory exists; the journal still says INSTALL
    "activate:stopped",  # the old version is stopped
    "before-switch",  # `previous` is set; `current` still names the old install
    "after-switch",  # `current` names the new install, which is not started yet
    "activate:started",  # the new version is started
    "health:checked",  # the health verdict is known but not journaled
    "commit:recorded",  # installed.json names the new version
    "commit:pruned",  # older installs and the download are deleted
    "rollback:switched",  # links and installed.json are restored
    "rollback:started",  # the old version is started again
    "cleanup:removed",  # leftovers of the update are deleted
    "failed:recorded",  # failed.json written; the journal still says CLEANUP (or ROLLBACK)
)


# The path of a successful update, in order; the rest are reached only when
# an update fails (the rollback path). Fault-injection tests sweep these.
SUCCESS_PATH_POINTS: Final = (
    "enter:DOWNLOAD", "download:chunk", "download:complete", "enter:VERIFY", "enter:INSTALL",
    "unpack", "install:unpacked", "enter:ACTIVATE", "activate:stopped", "before-switch",
    "after-switch", "activate:started", "enter:HEALTH", "health:checked", "enter:COMMIT",
    "commit:recorded", "commit:pruned", "enter:CLEANUP", "cleanup:removed", "enter:DONE",
)  # fmt: skip
# The points only an update through a delta reaches (between enter:DOWNLOAD
# and download:complete, instead of download:chunk).
DELTA_PATH_POINTS: Final = ("delta:fetched", "delta:rebuilt")
FAILURE_PATH_POINTS: Final = (
    "enter:ROLLBACK", "rollback:switched", "rollback:started", "enter:FAILED", "failed:recorded",
)  # fmt: skip


# Points of a certificate renewal (agent/_renew.py, agent/_identity.py), in order.
RENEWAL_POINTS: Final = (
    "renew:key-written",  # the new key is written aside; nothing asked yet
    "renew:answered",  # the hub issued the new certificate; nothing of it saved
    "renew:cert-written",  # renew-cert.pem written; key.pem and cert.pem still the old pair
    "renew:key-promoted",  # key.pem is the new key, cert.pem still the old certificate
)


def crash_points() -> list[str]:
    """Every point the updater calls its crash hook at."""
    return [f"enter:{state.name}" for state in State] + list(_INNER_POINTS)


def parse_crash_spec(spec: str) -> tuple[str, int]:
    """Split `<point>[:<n>]` into the point and the occurrence to crash at.

    Raises:
        ValueError: an unknown point or an occurrence below 1.
    """
    point, occurrence = spec.strip(), 1
    head, sep, tail = point.rpartition(":")
    if sep and tail.isdigit():
        point, occurrence = head, int(tail)
    known = crash_points() + list(RENEWAL_POINTS)
    if point not in known:
        raise ValueError(f"{CRASH_ENV}: unknown crash point {point!r}; known: {known}")
    if occurrence < 1:
        raise ValueError(f"{CRASH_ENV}: the occurrence must be >= 1, got {occurrence}")
    return point, occurrence


def crash_hook_from_env() -> Callable[[str], None] | None:
    """A hook that SIGKILLs this process as `FOGLINE_FAULT_CRASH_AT` says, or None when unset.

    The variable is read once, now.

    Raises:
        ValueError: the variable names an unknown point (a typo must not
            silently turn a fault test into a pass).
    """
    spec = os.environ.get(CRASH_ENV, "").strip()
    if not spec:
        return None
    point, occurrence = parse_crash_spec(spec)
    seen = 0

    def hook(reached: str) -> None:
        nonlocal seen
        if reached != point:
            return
        seen += 1
        if seen == occurrence:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
