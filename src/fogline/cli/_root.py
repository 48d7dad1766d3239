"""The root of the `fogline` command, shared by the whole command and the agent's."""

from typing import Annotated

import typer

from fogline import __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fogline {__version__}")
        raise typer.Exit()


def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the Fogline version and exit.",
        ),
    ] = False,
) -> None:
    """Fogline: ship software to edge fleets safely, and process data at the edge."""


def new_app() -> typer.Typer:
    """A `fogline` command with the root options and no subcommands yet."""
    app = typer.Typer(
        name="fogline",
        help="Fogline: ship software to edge fleets safely, and process data at the edge.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.callback()(_root)
    return app


def version() -> None:
    """Print the Fogline version alone (`fogline --version` says `fogline X.Y.Z`)."""
    typer.echo(__version__)
