"""`fogline devices ...`: the fleet registry; how a device is shown is `_devices_view`."""

import enum
from typing import Annotated, Any, Final

import typer
import yaml

from fogline.hubclient import HubStatusError
from fogline.protocol import label_problem

from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    connect,
    err_console,
    print_json,
    print_rows,
    safe_text,
    wants_json,
)
from ._devices_view import print_device, show_rows
from ._health import HEALTH_COLUMNS, point_row

app = typer.Typer(
    help="List, inspect, label, promote, revoke and remove devices; show their desired state.",
    no_args_is_help=True,
)

# --all follows at most this many pages: 1,000 pages of 1,000 is a million devices.
MAX_PAGES: Final = 1000


class Status(enum.StrEnum):
    online = "online"
    offline = "offline"
    revoked = "revoked"


class Sync(enum.StrEnum):
    in_sync = "in-sync"
    pending = "pending"
    error = "error"


class Health(enum.StrEnum):
    ok = "ok"
    warning = "warning"
    critical = "critical"


class Sort(enum.StrEnum):
    name = "name"
    last_seen = "last_seen"


@app.command("ls")
def list_(
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-l",
            help="Label selector, as kubectl -l: 'site=berlin,tier in (gold,silver),!retired,"
            "env!=lab'. Answered by the hub.",
        ),
    ] = None,
    status: Annotated[Status | None, typer.Option(help="Only devices with this status.")] = None,
    sync: Annotated[Sync | None, typer.Option(help="Only devices in this sync state.")] = None,
    module: Annotated[
        str | None, typer.Option(help="Only devices that report module NAME, or NAME@VERSION.")
    ] = None,
    health: Annotated[
        list[Health] | None,
        typer.Option(
            help="Only devices at this health (repeatable: --health warning --health critical): "
            "the worst of their active alerts.",
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Only devices running this agent version.")
    ] = None,
    sort: Annotated[Sort, typer.Option(help="Sort by name or by last report.")] = Sort.name,
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Devices per page (the hub allows 1 to 1000).")
    ] = 100,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this cursor (printed after a partial list).")
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Follow every page (progress on stderr).")
    ] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """List devices page by page: name, id, status, health, labels, last seen, sync, agent version.

    Without --all one page of --limit devices is shown, and the command to see
    the next page is printed on stderr.
    """
    params: dict[str, str] = {"sort": sort.value, "order": "desc" if desc else "asc"}
    params["limit"] = str(limit)
    for key, value in (("selector", selector), ("status", status), ("sync", sync)):
        if value is not None:
            params[key] = str(value)
    if module is not None:
        params["module"] = module
    if health:
        params["health"] = ",".join(sorted({level.value for level in health}))
    if version is not None:
        params["version"] = version
    rows: list[dict[str, Any]] = []
    next_cursor = cursor
    with connect(hub, token, ca) as client:
        for pages in range(1, MAX_PAGES + 1):
            if next_cursor is not None:
                params["cursor"] = next_cursor
            page = client.get("/v1/devices", params=params)
            rows += page["devices"]
            next_cursor = page.get("next_cursor")
            if not all_pages or next_cursor is None:
                break
            err_console.print(f"{len(rows)} devices ({pages} pages)...", highlight=False)
    show_rows(rows, output)
    if next_cursor is not None:
        more = "after --all's page limit" if all_pages else "on the next page"
        err_console.print(
            f"more devices {more}: add --cursor {next_cursor} (or --all)",
            highlight=False,
            soft_wrap=True,
        )


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Show one device in full: its health now, its trend over the last hour, and
    min/avg/max over the last 24 hours."""
    with connect(hub, token, ca) as client:
        row = client.get(f"/v1/devices/{ref}")
        if wants_json(output):
            print_json(row)
            return
        try:
            series = client.get(f"/v1/devices/{row['id']}/health", params={"since": "1h"})
            # The hub's default step: about 500 points, raw samples while
            # they are kept (24 h by default), so a new device has some too.
            day = client.get(f"/v1/devices/{row['id']}/health", params={"since": "24h"})
        except HubStatusError:  # a hub before device health: no trend
            series = day = {"points": []}
    print_device(row, series["points"], day["points"])


@app.command("health")
def health(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    since: Annotated[str, typer.Option(help="How far back, e.g. 1h, 24h, 30d.")] = "1h",
    step: Annotated[
        str | None,
        typer.Option(help="One point per step, e.g. 1m, 5m [default: about 500 points]."),
    ] = None,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Print a device's health series, oldest first (MiB, %, °C).

    Raw samples (one per report) while the window is within their retention,
    rollups beyond (see `hub serve --health-*`); `-o json` gives every field,
    per-module figures included.
    """
    params = {"since": since} | ({"step": step} if step else {})
    with connect(hub, token, ca) as client:
        series = client.get(f"/v1/devices/{ref}/health", params=params)
    if wants_json(output):
        print_json(series)
        return
    step_text = f"every {series['step_s']:g}s" if series["step_s"] else "raw samples"
    err_console.print(
        safe_text(f"# {series['name']}: {len(series['points'])} points, {step_text}"),
        highlight=False,
    )
    print_rows([point_row(p) for p in series["points"]], HEALTH_COLUMNS, output)


@app.command("desired")
def desired(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Print the desired-state document the hub serves the device now (YAML).

    What the deployments that select it compile to (config, modules with
    their pinned releases, pipelines, drift policy, release keys), as the
    node receives it; `-o json` adds the revision and what the node applied.
    """
    with connect(hub, token, ca) as client:
        view = client.get(f"/v1/devices/{ref}/desired")
    # YAML, piped or not (like `get deployment`), unless JSON is asked for.
    if output is not None and wants_json(output):
        print_json(view)
        return
    applied = "applied" if view["applied_revision"] == view["revision"] else "not applied yet"
    err_console.print(
        safe_text(f"# {view['name']}: revision {view['revision'][:19]}… ({applied})"),
        highlight=False,
    )
    typer.echo(yaml.safe_dump(view["document"], sort_keys=False, allow_unicode=True).rstrip())


@app.command("label")
def label(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    changes: Annotated[list[str], typer.Argument(help="k=v to set, k- to remove.")],
    hub: HubOpt = None,
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
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Revoke a device: the hub refuses its certificate from its next request on."""
    with connect(hub, token, ca) as client:
        row = client.post(f"/v1/devices/{ref}/revoke")
    show_rows([row], output)


@app.command("unquarantine")
def unquarantine(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Lift the quarantine the hub put on a device that crash-looped too often
    (a deployment's spec.selfHealing.quarantineAfter). Audited."""
    with connect(hub, token, ca) as client:
        row = client.post(f"/v1/devices/{ref}/unquarantine")
    show_rows([row], output)


@app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    keys: Annotated[list[str], typer.Argument(help="Keys of labels the device asked for.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Use labels the device asked for (its requested labels) for targeting:
    copies their values into the device's labels. Audited."""
    with connect(hub, token, ca) as client:
        row = client.patch(f"/v1/devices/{ref}/labels", json={"promote": keys})
    show_rows([row], output)


@app.command("rm")
def remove(
    ref: Annotated[str, typer.Argument(help="Device id or name.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Revoke the device first if it is still active.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Remove a revoked device: its name is free again; its key stays refused. Audited."""
    with connect(hub, token, ca) as client:
        row = client.delete(f"/v1/devices/{ref}", params={"force": "true" if force else "false"})
    show_rows([row], output)
