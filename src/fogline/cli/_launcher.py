"""`fogline launcher run`: the node's service, which runs the agent and keeps the previous one."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import LogFormatOpt

app = typer.Typer(
    help="Run the agent under the launcher, which updates it safely.", no_args_is_help=True
)


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run(
    ctx: typer.Context,
    root: Annotated[Path, typer.Option("--root", help="The launcher's state directory.")],
    trial_deadline: Annotated[
        str,
        typer.Option(help="How long a new agent has to reconnect and report, e.g. 2m."),
    ] = "2m",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """Run `fogline agent run ...` (the arguments after --) from the current agent slot.

    A new agent (a `kind: agent` release) is on trial until it reports to the
    hub; if it exits first or misses the deadline, the launcher goes back to
    the previous agent, which reports the failed update.
    """
    # Imported here: the launcher is dependency-light and other commands need none of it.
    from fogline.launcher.__main__ import main

    raise typer.Exit(
        main(
            [
                "--root",
                str(root),
                "--trial-deadline",
                trial_deadline,
                "--log-level",
                log_level,
                *(["--log-format", log_format.value] if log_format else []),
                "--",
                *ctx.args,
            ]
        )
    )
