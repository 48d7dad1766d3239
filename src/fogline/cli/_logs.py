"""`fogline logs DEVICE MODULE [--tail N] [--timestamps] [--follow]`: a module's
stdout and stderr, as the node shipped them to the hub; `fogline logs DEVICE
--agent` the agent's own log (warnings and errors marked as stderr)."""

import datetime as dt
import time
from typing import Annotated, Any, Final

import typer

from fogline.manifest import parse_duration

from ._client import HubClient
from ._common import CaOpt, HubOpt, TokenOpt, connect, console, err_console, safe_text

POLL_S: Final = 1.0
# The agent's own log (agent/_agentlog.py): no module can be named `_agent`.
AGENT_STREAM: Final = "logs/_agent"
QUERY_LIMIT: Final = 10_000  # the hub's most records per query


def _timestamp(created: str) -> str:
    """When the node wrote the line, by its clock: UTC, to the millisecond."""
    try:
        moment = dt.datetime.fromisoformat(created).astimezone(dt.UTC)
    except (TypeError, ValueError):
        return safe_text(created)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _print(rows: list[dict[str, Any]], timestamps: bool) -> None:
    for row in rows:
        payload = row["payload"]
        marker = "[red]![/red] " if payload.get("stream") == "stderr" else "  "
        if timestamps:
            marker = f"{_timestamp(row['created'])} {marker}"
        console.print(marker, end="", highlight=False)
        console.out(safe_text(payload.get("line", ""), markup=False), highlight=False)


def _query(client: HubClient, params: dict[str, Any], stream: str | None) -> list[dict[str, Any]]:
    """The window's lines, oldest first; only `stream` (stdout or stderr) if given."""
    rows = client.get("/v1/telemetry", params={**params, "limit": QUERY_LIMIT})
    return [r for r in rows if not stream or r["payload"].get("stream") == stream]


def _newest(
    client: HubClient, params: dict[str, Any], stream: str | None, tail: int
) -> list[dict[str, Any]]:
    """The window's newest `tail` lines (of `stream` if given), oldest first.

    The hub answers the newest records itself (`tail`); with --stream it is
    asked for more, since the other stream's lines are dropped here.
    """
    wanted = QUERY_LIMIT if stream else tail
    rows = client.get("/v1/telemetry", params={**params, "tail": wanted})
    return [r for r in rows if not stream or r["payload"].get("stream") == stream][-tail:]


def logs(
    device: Annotated[str, typer.Argument(help="Device id or name.")],
    module: Annotated[
        str | None, typer.Argument(help="Module name (none with --agent).", show_default=False)
    ] = None,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    since: Annotated[str, typer.Option(help="How far back, e.g. 10m, 1h, 1d.")] = "1h",
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail", min=0, max=QUERY_LIMIT, help="Only the last N lines (of --since's window)."
        ),
    ] = None,
    timestamps: Annotated[
        bool,
        typer.Option("--timestamps", "-t", help="Start each line with when the node wrote it."),
    ] = False,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C (blocks)."),
    ] = False,
    stream: Annotated[str | None, typer.Option(help="Only stdout or stderr.")] = None,
    agent: Annotated[
        bool,
        typer.Option(
            "--agent",
            help="The agent's own log instead of a module's (warnings and errors marked !).",
        ),
    ] = False,
) -> None:
    """Print a module's logs, or with --agent the agent's own, as the node
    shipped them (stderr lines marked with !).

    Lines reach the hub with the node's reports, a few seconds after they
    were written. An unknown device is an error, as for `devices show`.
    """
    if agent and module is not None:
        raise typer.BadParameter("give a module or --agent, not both", param_hint="MODULE")
    if not agent and module is None:
        raise typer.BadParameter("missing: a module name, or --agent", param_hint="MODULE")
    if stream not in (None, "stdout", "stderr"):
        raise typer.BadParameter("must be stdout or stderr", param_hint="--stream")
    try:
        parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    with connect(hub, token, ca) as client:
        known = client.get(f"/v1/devices/{device}")  # 404 (one line, exit 1) when unknown
        what = "agent" if agent else safe_text(module or "")
        stream_name = AGENT_STREAM if agent else f"logs/{module}"
        params: dict[str, Any] = {"device": known["id"], "stream": stream_name, "since": since}
        if tail is not None:
            rows = _newest(client, params, stream, tail) if tail else []
            # The window's newest line of either stream: --follow goes on after it.
            window = client.get("/v1/telemetry", params={**params, "tail": 1})
        else:
            window = _query(client, params, None)
            rows = [r for r in window if not stream or r["payload"].get("stream") == stream]
        _print(rows, timestamps)
        if not follow:
            if not window:
                err_console.print(
                    f"no {what} lines from {safe_text(known['name'])} in the last {since}",
                    highlight=False,
                )
            return
        # Sequence numbers grow on the node: a line is new when its number is.
        newest = max((r["seq"] for r in window), default=-1)
        while True:
            time.sleep(POLL_S)
            # The window only needs to cover one poll.
            fresh = [
                r for r in _query(client, {**params, "since": "10m"}, stream) if r["seq"] > newest
            ]
            fresh.sort(key=lambda r: r["seq"])
            _print(fresh, timestamps)
            newest = max([newest, *(r["seq"] for r in fresh)])
