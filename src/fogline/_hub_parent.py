"""The parent of a hub's worker processes (`fogline hub serve --workers N`)
once they are forked: a fresh, small interpreter that only waits for them.

The hub prepares its data directory and schema, binds the port and forks its
workers from one process, which imported all of the hub to do that. After
the fork that process only waits, yet it kept about 125 MB resident (59 MB
of it private): as much as a worker. So it replaces itself (`exec`, same
pid) with this module, which imports none of the hub: about 14 MB. The
workers stay its children, still die with it (PR_SET_PDEATHSIG follows the
process, not its program), and whatever supervises the hub sees the same pid.

This module is imported by the exec'd interpreter on its own: it must stay
light (the standard library and fogline._log only).
"""

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Final

from ._log import configure_logging, event

log = logging.getLogger("fogline.hub")

_STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})


def exec_parent(workers: set[int], log_level: str) -> None:
    """Replace this process by a fresh interpreter that supervises
    `workers`; returns only if the exec failed (then supervise in process).

    SIGTERM and SIGINT are blocked across the exec: one that arrives before
    the new program has its handlers waits, pending, instead of killing the
    parent by default.
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    # The new interpreter finds fogline where this one did, whatever put it on sys.path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
    args = [sys.executable, "-m", __name__, log_level, *map(str, sorted(workers))]
    for stream in (sys.stdout, sys.stderr):  # what is buffered would be lost
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        os.execve(sys.executable, args, env)  # noqa: S606  # our own interpreter, no shell
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        event(log, "hub.parent_exec_failed", logging.WARNING, error=str(exc))


def supervise(workers: set[int]) -> int:
    """Wait for every worker; the hub's exit code.

    SIGTERM/SIGINT stop every worker gracefully (exit 0). A worker that dies
    on its own stops the others and the hub exits 1, so whatever supervises
    the hub restarts it whole.
    """
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked across the exec
    code = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # none left that we did not see end
            break
        workers.discard(pid)
        if not stopping:
            event(
                log,
                "hub.worker_exited",
                logging.ERROR,
                pid=pid,
                exit_code=os.waitstatus_to_exitcode(status),
            )
            code = 1
            stop(signal.SIGTERM, None)
    return code


def main(argv: list[str]) -> int:
    """`python -m fogline._hub_parent LOG_LEVEL PID...`, run by exec_parent only."""
    configure_logging(argv[1])
    return supervise({int(pid) for pid in argv[2:]})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
