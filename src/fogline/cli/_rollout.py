"""`fogline rollout ...`: follow and steer staged rollouts."""

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fogline._text import visible

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
from ._format import durations_in, plural, without_repeated_prefixes

app = typer.Typer(help="Staged rollouts: list, watch, pause, resume, abort, roll back.")
FINAL = frozenset({"completed", "rolled-back", "aborted", "superseded"})
NameArg = Annotated[str, typer.Argument(help="Rollout id, or a deployment (its latest rollout).")]


@app.command("ls")
def ls(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """List recent rollouts."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/rollouts", params={"limit": limit})
    for row in rows:
        # Devices that failed, those since reverted included (the hub keeps the count).
        row["failed"] = row.get("failed_total", row["failed"])
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
            ("reverted", "REVERTED"),
            ("started", "STARTED"),
            ("created_by", "BY"),
        ],
        output,
    )


COUNTS = ("pending", "updating", "succeeded", "failed", "skipped", "reverted")
_STYLES = {"succeeded": "green", "failed": "red", "skipped": "yellow", "reverted": "magenta"}
MAX_DEVICE_LINES = 10


def outcome(view: dict[str, Any]) -> str:
    """One line: where the rollout stands, and what the counts add up to."""
    state, rid = view["state"], view["id"]
    total = view.get("devices") or 0
    failed = view.get("failed_total", view.get("failed")) or 0
    reason = f": {view['reason']}" if view.get("reason") else ""
    wave = f"wave {view['current_wave']} of {view['waves_total']}"
    if state == "running":
        return f"running, {wave}: {view.get('succeeded', 0)} of {plural(total, 'device')} done"
    if state == "completed":
        if failed:
            return (
                f"completed with {failed} of {plural(total, 'device')} failed: the policy let "
                "them through (without spec.rollout there is no health gate; successThreshold "
                "and maxFailures stop a rollout on failures)"
            )
        skipped = f", {view['skipped']} skipped (offline)" if view.get("skipped") else ""
        return (
            f"completed: {view.get('succeeded', 0)} of {plural(total, 'device')} succeeded{skipped}"
        )
    if state == "paused":
        return (
            f"paused at {wave}{reason}; `fogline rollout resume {rid}` accepts the failures "
            f"and goes on, `fogline rollout rollback {rid}` serves the previous revision"
        )
    if state == "rolled-back":
        reverted = view.get("reverted") or 0
        had_failed = f" ({failed} of them had failed)" if failed else ""
        return (
            f"rolled back at {wave}{reason}; {plural(reverted, 'device')} served the previous "
            f"revision again{had_failed}"
        )
    return f"{state} at {wave}{reason}"


def _device_problems(view: dict[str, Any]) -> list[str]:
    """Devices that failed, were skipped, or were reverted after a problem: name and why."""
    lines = []
    for device in view.get("device_states") or []:
        if device["state"] in ("failed", "skipped") or (
            device["state"] == "reverted" and device.get("reason")
        ):
            why = f": {without_repeated_prefixes(device['reason'])}" if device.get("reason") else ""
            state = device["state"]
            if state == "reverted" and device.get("failed"):
                state = "failed, then reverted"
            lines.append(f"{device['name']} (wave {device['wave']}) {state}{why}")
    if len(lines) > MAX_DEVICE_LINES:
        more = len(lines) - MAX_DEVICE_LINES
        lines = [*lines[:MAX_DEVICE_LINES], f"and {more} more (-o json lists every device)"]
    return lines


def _row(label: str, counts: dict[str, Any], total: Any) -> list[str]:
    cells = [label, str(total)]
    for key in COUNTS:
        value = counts.get(key, 0)
        style = _STYLES.get(key)
        cells.append(f"[{style}]{value}[/{style}]" if style and value else str(value))
    return cells


def _table(view: dict[str, Any]) -> Group:
    title = (
        f"rollout {view['id']} ({', '.join(view['deployments']) or '-'}): {view['state']}, "
        f"wave {view['current_wave']}/{view['waves_total']} — {durations_in(view['policy'])}"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("WAVE", "DEVICES", *(c.upper() for c in COUNTS)):
        table.add_column(column, justify="right")
    for wave in view["waves"]:
        table.add_row(*_row(str(wave["wave"]), wave, wave["devices"]))
    if len(view["waves"]) > 1:
        table.add_row(*_row("all", view, view["devices"]), style="bold")
    parts: list[Any] = [Text(visible(title)), table]
    analysis = _analysis_table(view)
    if analysis is not None:
        parts.append(analysis)
    parts.append(Text(visible(outcome(view))))
    problems = _device_problems(view)
    if problems:
        parts.append(Text(visible("\n".join(f"  {line}" for line in problems))))
    return Group(*parts)


_VERDICT_STYLES = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def _analysis_table(view: dict[str, Any]) -> Table | None:
    """The last analysed wave's metrics: verdict, both medians, p-value, effect size."""
    waves = (view.get("analysis") or {}).get("waves") or []
    if not waves:
        return None
    last = waves[-1]
    table = Table(
        title=visible(
            f"canary analysis, wave {last.get('wave')}: {last.get('outcome')} "
            f"(control: {last.get('control')}, window {last.get('window_s')}s)"
        ),
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    columns = ("METRIC", "VERDICT", "CANARIES", "CONTROL", "N", "P", "EFFECT", "TOLERANCE")
    for column in columns:
        table.add_column(column, justify="left" if column in ("METRIC", "VERDICT") else "right")
    for metric in last.get("metrics") or []:
        verdict = str(metric.get("outcome"))
        style = _VERDICT_STYLES.get(verdict, "")
        p = metric.get("p_value")
        effect = metric.get("effect_size")
        table.add_row(
            visible(str(metric.get("metric"))),
            f"[{style}]{verdict}[/{style}]" if style else visible(verdict),
            visible(str(metric.get("canary_median_text") or "-")),
            visible(str(metric.get("control_median_text") or "-")),
            f"{metric.get('canaries')}/{metric.get('controls')}",
            "-" if p is None else f"{float(p):.2g}",
            "-" if effect is None else f"{float(effect):+.2f}",
            visible(str(metric.get("tolerance"))),
        )
    return table


@app.command("status")
def status(
    name: NameArg,
    hub: HubOpt = None,
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


def _act(action: str, name: str, hub: str | None, token: str | None, ca: Any, output: Any) -> None:
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
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Stop starting waves; devices already updating go on."""
    _act("pause", name, hub, token, ca, output)


@app.command("resume")
def resume(
    name: NameArg,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Resume a paused rollout, accepting the failures so far."""
    _act("resume", name, hub, token, ca, output)


@app.command("abort")
def abort(
    name: NameArg,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """End the rollout now; devices keep what they are served."""
    _act("abort", name, hub, token, ca, output)


@app.command("rollback")
def rollback(
    name: NameArg,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Serve every updated device its previous revision; restore the deployments."""
    _act("rollback", name, hub, token, ca, output)


from ._rehearse import rehearse  # noqa: E402  (kept last: one line to register it)

app.command("rehearse")(rehearse)
