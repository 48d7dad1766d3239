"""`fogline logs DEVICE MODULE [--follow]`: a module's stdout and stderr, from the hub."""

import time
from typing import Annotated, Any

import typer

from ._common import CaOpt, HubOpt, TokenOpt, connect, console, safe_text

POLL_S = 1.0


def _print(rows: list[dict[str, Any]], stream: str | None) -> None:
    for row in rows:
        payload = row["payload"]
        if stream and payload.get("stream") != stream:
            continue
        marker = "[red]![/red] " if payload.get("stream") == "stderr" else "  "
        console.print(marker, end="")
        console.out(safe_text(payload.get("line", ""), markup=False), highlight=False)


def logs(
    device: Annotated[str, typer.Argument(help="Device id or name.")],
    module: Annotated[str, typer.Argument(help="Module name.")],
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    since: Annotated[str, typer.Option(help="How far back, e.g. 10m, 1h, 1d.")] = "1h",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    stream: Annotated[str | None, typer.Option(help="Only stdout or stderr.")] = None,
) -> None:
    """Print a module's logs as the node shipped them (stderr lines marked with !)."""
    if stream not in (None, "stdout", "stderr"):
        raise typer.BadParameter("must be stdout or stderr", param_hint="--stream")
    params: dict[str, Any] = {
        "device": device,
        "stream": f"logs/{module}",
        "since": since,
        "limit": 10_000,
    }
    seen: set[int] = set()
    with connect(hub, token, ca) as client:
        while True:
            rows = [r for r in client.get("/v1/telemetry", params=params) if r["seq"] not in seen]
            seen.update(r["seq"] for r in rows)
            _print(sorted(rows, key=lambda r: r["seq"]), stream)
            if not follow:
                return
            params["since"] = "10m"  # the window only needs to cover one poll
            time.sleep(POLL_S)
