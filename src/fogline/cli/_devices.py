"""`fogline devices ...`: the fleet registry."""

from typing import Annotated, Any

import typer

from fogline.protocol import PLATFORM_LABEL_PREFIX, label_problem

from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    ago,
    connect,
    console,
    print_json,
    print_rows,
    wants_json,
)

app = typer.Typer(help="List, inspect, label and revoke devices.", no_args_is_help=True)

DEVICE_COLUMNS = [
    ("name", "NAME"),
    ("short_id", "ID"),
    ("status", "STATUS"),
    ("user_labels", "LABELS"),
    ("arch", "ARCH"),
    ("seen", "LAST SEEN"),
    ("agent_version", "AGENT"),
]


def for_table(row: dict[str, Any]) -> dict[str, Any]:
    """Table view of a device: short id, relative time, labels without platform facts."""
    labels = {k: v for k, v in row["labels"].items() if not k.startswith(PLATFORM_LABEL_PREFIX)}
    return {**row, "short_id": row["id"][:8], "user_labels": labels, "seen": ago(row["last_seen"])}


def show_rows(rows: list[dict[str, Any]], output: Any) -> None:
    print_rows(rows if wants_json(output) else [for_table(r) for r in rows], DEVICE_COLUMNS, output)


@app.command("ls")
def list_(hub: HubOpt, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None) -> None:
    """List devices: name, id, labels, status, last seen, agent version."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/devices")
    show_rows(rows, output)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show one device in full."""
    with connect(hub, token, ca) as client:
        row = client.get(f"/v1/devices/{ref}")
    if wants_json(output):
        print_json(row)
        return
    for key, value in row.items():
        shown = (
            ",".join(f"{k}={v}" for k, v in sorted(value.items()))
            if isinstance(value, dict)
            else value
        )
        console.print(f"[bold]{key:>15}[/bold]  {'-' if shown is None else shown}", highlight=False)


@app.command("label")
def label(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    changes: Annotated[list[str], typer.Argument(help="k=v to set, k- to remove.")],
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Set (k=v) or remove (k-) labels on a device, like kubectl label."""
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for change in changes:
        if change.endswith("-") and "=" not in change:
            to_remove.append(change[:-1])
            continue
        key, sep, value = change.partition("=")
        problem = "expected k=v or k-" if not sep else label_problem(key, value)
        if problem:
            raise typer.BadParameter(f"{change!r}: {problem}")
        to_set[key] = value
    with connect(hub, token, ca) as client:
        row = client.patch(f"/v1/devices/{ref}/labels", json={"set": to_set, "remove": to_remove})
    show_rows([row], output)


@app.command("revoke")
def revoke(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Revoke a device: the hub refuses its certificate from its next request on."""
    with connect(hub, token, ca) as client:
        row = client.post(f"/v1/devices/{ref}/revoke")
    show_rows([row], output)
