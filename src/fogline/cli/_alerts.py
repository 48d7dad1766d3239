"""`fogline alerts ls|ack`: what the hub noticed about devices by itself."""

from typing import Annotated, Any

import typer

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
    safe_text,
    wants_json,
)

app = typer.Typer(
    help="Alerts the hub raises: offline, crash-loop, disk, memory, certificate, outbox.",
    no_args_is_help=True,
)

ALERT_COLUMNS = [
    ("id", "ID"),
    ("kind", "KIND"),
    ("device", "DEVICE"),
    ("detail", "DETAIL"),
    ("raised", "RAISED"),
    ("state", "STATE"),
]


def _row(alert: dict[str, Any]) -> dict[str, Any]:
    state = "active" if alert["active"] else f"cleared {ago(alert['cleared_at'])}"
    if alert.get("acked_at"):
        state += f", acked by {alert['acked_by']}"
    return {**alert, "raised": ago(alert["raised_at"]), "state": state}


@app.command("ls")
def ls(
    active: Annotated[bool, typer.Option("--active", help="Only alerts not cleared.")] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """List alerts, newest first."""
    with connect(hub, token, ca) as client:
        alerts = client.get("/v1/alerts", params={"active": "true" if active else "false"})
    print_rows(alerts if wants_json(output) else [_row(a) for a in alerts], ALERT_COLUMNS, output)


@app.command("ack")
def ack(
    alert_id: Annotated[str, typer.Argument(help="The alert's id (see `alerts ls`).")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Acknowledge an alert (operators): it stays active until its cause clears."""
    with connect(hub, token, ca) as client:
        alert = client.post(f"/v1/alerts/{alert_id}/ack")
    if wants_json(output):
        print_json(alert)
        return
    console.print(safe_text(f"acknowledged {alert['kind']} on {alert['device']}"), highlight=False)
