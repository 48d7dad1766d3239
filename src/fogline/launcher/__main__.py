"""`python -m fogline.launcher --root DIR [--trial-deadline 2m] -- agent run ...`

The launcher without the CLI's dependencies: argparse and fogline's base modules.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fogline import __version__
from fogline._duration import parse_duration
from fogline._log import configure_logging

from ._launcher import Launcher


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the launcher's options and run it; the agent's arguments follow `--`."""
    parser = argparse.ArgumentParser(
        prog="fogline launcher run",
        description="Run the node's agent; go back to the previous agent when a new one "
        "fails its trial.",
    )
    parser.add_argument("--root", type=Path, required=True, help="The launcher's state directory.")
    parser.add_argument(
        "--trial-deadline",
        default="2m",
        help="How long a new agent has to reconnect and report (default 2m).",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=["human", "json"], default=None)
    parser.add_argument("agent_args", nargs=argparse.REMAINDER, help="-- agent run ...")
    options = parser.parse_args(argv)
    agent_args = list(options.agent_args)
    if agent_args[:1] == ["--"]:
        agent_args = agent_args[1:]
    if not agent_args:
        parser.error("the agent's command follows --, e.g. -- agent run --hub ...")
    try:
        deadline_s = parse_duration(options.trial_deadline)
    except ValueError as exc:
        parser.error(f"--trial-deadline: {exc}")
    configure_logging(options.log_level, options.log_format)
    launcher = Launcher(
        options.root, agent_args, builtin_version=__version__, trial_deadline_s=deadline_s
    )
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
