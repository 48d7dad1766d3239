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
light (the standard library, fogline._log and fogline._reexec only). It
logs only when a worker dies, so fogline._log (logging, orjson: about 4 MB of
its 14 MB) is imported then, not at start.
"""

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import Final

from ._reexec import STOP_SIGNALS, exec_module, unblock_stop_signals

LOGGER: Final = "fogline.hub"


def exec_parent(workers: set[int], log_level: str) -> None:
    """Replace this process by a fresh interpreter that supervises
    `workers`; returns only if the exec failed (then supervise in process).

    SIGTERM and SIGINT are blocked across the exec: one that arrives before
    the new program has its handlers waits, pending, instead of killing the
    parent by default.
    """
    import logging

    from ._log import event

    error = exec_module(__name__, [log_level, *map(str, sorted(workers))])
    event(logging.getLogger(LOGGER), "hub.parent_exec_failed", logging.WARNING, error=str(error))


def supervise(workers: set[int], log_level: str | None = None) -> int:
    """Wait for every worker; the hub's exit code.

    SIGTERM/SIGINT stop every worker gracefully (exit 0). A worker that dies
    on its own stops the others and the hub exits 1, so whatever supervises
    the hub restarts it whole. `log_level`: configure logging before the
    first event (None: it is configured already).
    """
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    unblock_stop_signals()  # blocked across the exec
    code = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # none left that we did not see end
            break
        workers.discard(pid)
        if not stopping:
            import logging  # only now: see the module's docstring

            from ._log import configure_logging, event

            if log_level is not None:
                configure_logging(log_level)
                log_level = None
            event(
                logging.getLogger(LOGGER),
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
    return supervise({int(pid) for pid in argv[2:]}, log_level=argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
