"""Replace this process (same pid) by a fresh, lean interpreter running one
of fogline's own modules: the hub's parent once its workers are forked
(`_hub_parent`) and the agent once its options are parsed (`cli._agent_main`).

Both shed what the first interpreter imported to get there. This module
stays light (the standard library only): the new interpreter imports it
again through its caller.
"""

import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Final

# Blocked across the exec: one that arrives before the new program has
# installed its handlers waits, pending, instead of killing the process by
# default. The new program unblocks them (`unblock_stop_signals`).
STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})


def exec_module(module: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> OSError:
    """`python -P -m module *argv` in place of this process, with `env`
    added to the environment; returns only if the exec failed (the error;
    the stop signals unblocked again, so the caller can go on in process).
    """
    from pathlib import Path  # here: the hub's parent imports this module only to wait

    package_root = str(Path(__file__).resolve().parent.parent)
    new_env = {**os.environ, **(env or {})}
    # The new interpreter finds fogline where this one did, whatever put it on sys.path.
    new_env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, new_env.get("PYTHONPATH"))))
    # -P: the working directory is not put first on sys.path (`-m` would),
    # where a `fogline` directory would shadow the one this process runs.
    args = [sys.executable, "-P", "-m", module, *argv]
    for stream in (sys.stdout, sys.stderr):  # what is buffered would be lost
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        os.execve(sys.executable, args, new_env)  # noqa: S606  # our own interpreter, no shell
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return exc
    raise AssertionError("unreachable: execve returned")  # pragma: no cover


def unblock_stop_signals() -> None:
    """In the new program, once its handlers are installed: the signals
    that came during the exec are delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
