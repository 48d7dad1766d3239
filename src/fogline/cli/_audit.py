"""`fogline audit ls`: who did what to the fleet, and when."""

from typing import Annotated

import typer

from ._common import CaOpt, HubOpt, OutputOpt, TokenOpt, connect, format_cell, print_rows

app = typer.Typer(help="The audit log: applies, rollouts, waves, operator actions.")


@app.command("ls")
def ls(
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    since: Annotated[
        str | None, typer.Option(help="A duration (1h, 30m) or an ISO 8601 timestamp.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the newest).")] = 200,
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, str | int] = {"limit": limit}
    if since:
        params["since"] = since
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/audit", params=params)
    for row in rows:
        row["details"] = format_cell({k: v for k, v in row["detail"].items() if v is not None})
    print_rows(
        rows,
        [
            ("at", "AT"),
            ("actor", "WHO"),
            ("action", "ACTION"),
            ("target", "TARGET"),
            ("details", "DETAILS"),
        ],
        output,
    )
