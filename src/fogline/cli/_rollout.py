"""`fogline rollout ...`: follow and steer staged rollouts."""

import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    ago,
    connect,
    console,
    err_console,
    print_json,
    print_rows,
    safe_text,
    wants_json,
)

app = typer.Typer(help="Staged rollouts: list, watch, pause, resume, abort, roll back.")
FINAL = frozenset({"completed", "rolled-back", "aborted", "superseded"})
NameArg = Annotated[str, typer.Argument(help="Rollout id, or a deployment (its latest rollout).")]


@app.command("ls")
def ls(
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """List recent rollouts."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/rollouts", params={"limit": limit})
    for row in rows:
        row["deployment"] = ",".join(row["deployments"])
        row["wave"] = f"{row['current_wave']}/{row['waves_total']}"
        row["started"] = ago(row["created_at"])
    print_rows(
        rows,
        [
            ("id", "ID"),
            ("deployment", "DEPLOYMENT"),
            ("state", "STATE"),
            ("wave", "WAVE"),
            ("devices", "DEVICES"),
            ("succeeded", "OK"),
            ("failed", "FAILED"),
            ("skipped", "SKIPPED"),
            ("started", "STARTED"),
            ("created_by", "BY"),
        ],
        output,
    )


def _table(view: dict[str, Any]) -> Table:
    title = (
        f"rollout {view['id']} ({', '.join(view['deployments']) or '-'}): {view['state']}, "
        f"wave {view['current_wave']}/{view['waves_total']} — {view['policy']}"
    )
    table = Table(title=safe_text(title), show_edge=False, pad_edge=False)
    for column in ("WAVE", "DEVICES", "PENDING", "UPDATING", "SUCCEEDED", "FAILED", "SKIPPED"):
        table.add_column(column, justify="right")
    for wave in view["waves"]:
        table.add_row(
            str(wave["wave"]),
            str(wave["devices"]),
            str(wave["pending"]),
            str(wave["updating"]),
            f"[green]{wave['succeeded']}[/green]",
            f"[red]{wave['failed']}[/red]",
            f"[yellow]{wave['skipped']}[/yellow]",
        )
    if view.get("reason"):
        table.caption = safe_text(str(view["reason"]))
    return table


@app.command("status")
def status(
    name: NameArg,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow until it ends.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Show a rollout per wave: pending, updating, succeeded, failed, skipped."""
    with connect(hub, token, ca) as client:
        view = client.get(f"/v1/rollouts/{name}")
        if wants_json(output):
            print_json(view)
            return
        if not watch:
            console.print(_table(view))
            return
        with Live(_table(view), console=console, refresh_per_second=4) as live:
            while view["state"] not in FINAL:
                time.sleep(max(0.2, interval))
                view = client.get(f"/v1/rollouts/{name}")
                live.update(_table(view))


def _act(action: str, name: str, hub: str, token: str | None, ca: Any, output: Any) -> None:
    with connect(hub, token, ca) as client:
        view = client.post(f"/v1/rollouts/{name}/{action}")
    if wants_json(output):
        print_json(view)
    else:
        state = f"rollout {view['id']}: {view['state']}"
        err_console.print(safe_text(state), highlight=False)


@app.command("pause")
def pause(
    name: NameArg,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Stop starting waves; devices already updating go on."""
    _act("pause", name, hub, token, ca, output)


@app.command("resume")
def resume(
    name: NameArg,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Resume a paused rollout, accepting the failures so far."""
    _act("resume", name, hub, token, ca, output)


@app.command("abort")
def abort(
    name: NameArg,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """End the rollout now; devices keep what they are served."""
    _act("abort", name, hub, token, ca, output)


@app.command("rollback")
def rollback(
    name: NameArg,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Serve every updated device its previous revision; restore the deployments."""
    _act("rollback", name, hub, token, ca, output)


from ._rehearse import rehearse  # noqa: E402  (kept last: one line to register it)

app.command("rehearse")(rehearse)
