"""`fogline telemetry query`: what the nodes sent to the cloud."""

import csv
import json
import sys
from typing import Annotated

import typer

from ._common import CaOpt, HubOpt, Output, TokenOpt, connect, print_json, print_rows, safe_text

app = typer.Typer(help="Query telemetry stored by the hub.", no_args_is_help=True)

COLUMNS = [
    ("created", "CREATED"),
    ("device", "DEVICE"),
    ("stream", "STREAM"),
    ("seq", "SEQ"),
    ("payload", "PAYLOAD"),
]


@app.command("query")
def query_command(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    device: Annotated[str | None, typer.Option(help="Device id or name.")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name, e.g. temps-10s.")] = None,
    since: Annotated[str, typer.Option(help="How far back, e.g. 15m, 1h, 7d.")] = "1h",
    limit: Annotated[
        int | None, typer.Option(min=1, max=10_000, help="The first N records (default 1000).")
    ] = None,
    tail: Annotated[
        int | None, typer.Option(min=1, max=10_000, help="The newest N records instead.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="table, csv or json.")
    ] = None,
) -> None:
    """Records by device and stream, oldest first. An unknown --device is an error."""
    if output not in (None, "table", "csv", "json"):
        raise typer.BadParameter("must be table, csv or json", param_hint="--output")
    if limit is not None and tail is not None:
        raise typer.BadParameter("give --limit or --tail, not both", param_hint="--tail")
    params: dict[str, str | int] = {"since": since}
    if tail is not None:
        params["tail"] = tail
    else:
        params["limit"] = limit or 1000
    if device:
        params["device"] = device  # the hub answers 404 for an unknown device
    if stream:
        params["stream"] = stream
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/telemetry", params=params)
    if output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["created", "device", "stream", "seq", "payload"])
        for row in rows:
            writer.writerow(
                [
                    safe_text(row["created"], markup=False),
                    safe_text(row["device"], markup=False),
                    safe_text(row["stream"], markup=False),
                    row["seq"],
                    json.dumps(row["payload"], sort_keys=True),  # ASCII: controls escaped
                ]
            )
        return
    if output == "json":
        print_json(rows)
        return
    print_rows(rows, COLUMNS, Output.table if output == "table" else None)
