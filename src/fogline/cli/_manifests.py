"""`fogline plan|apply|get|delete`: fleet manifests as code."""

from collections import defaultdict
from typing import Annotated, Any

import typer
import yaml

from fogline.manifest import ManifestError, ManifestSource, Problem, load_manifests, read_sources

from ._client import HubRefusedError
from ._common import (
    CaOpt,
    HubOpt,
    Output,
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

FileOpt = Annotated[
    list[str],
    typer.Option(
        "--filename", "-f", help="A manifest file, a directory of *.yaml, or - for stdin."
    ),
]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Delete deployments that are not in the given files.")
]

get_app = typer.Typer(help="Show applied manifests.", no_args_is_help=True)
delete_app = typer.Typer(help="Delete applied manifests.", no_args_is_help=True)


def _request(filenames: list[str], prune: bool) -> dict[str, Any]:
    sources = [source for name in filenames for source in read_sources(name)]
    if not sources:
        raise ManifestError([Problem(filenames[0], 1, 1, "", "no *.yaml or *.yml files found")])
    return {"files": [{"name": s.name, "text": s.text} for s in sources], "prune": prune}


def _send(path: str, hub: str, token: str | None, ca: Any, body: dict[str, Any]) -> Any:
    with connect(hub, token, ca) as client:
        try:
            return client.post(path, json=body)
        except HubRefusedError as exc:
            if exc.code != "invalid_manifest":
                raise
            for line in exc.message.splitlines():
                err_console.print(
                    f"[red]error[/red]: {safe_text(line)}", highlight=False, soft_wrap=True
                )
            raise typer.Exit(1) from None


def _short(revision: str | None) -> str:
    return "-" if revision is None else revision.removeprefix("sha256:")[:12]


def _summarise(value: Any) -> Any:
    """Module entries as `name@version (digest)`: signatures are noise in a plan."""
    if isinstance(value, dict):
        if {"name", "version", "digest"} <= value.keys():
            return f"{value['name']}@{value['version']} ({_short(value['digest'])})"
        return {k: _summarise(v) for k, v in value.items() if k != "signature"}
    if isinstance(value, list):
        return [_summarise(v) for v in value]
    return value


def _render_value(value: Any) -> str:
    text = yaml.safe_dump(_summarise(value), default_flow_style=True, width=10_000).strip()
    # Escaped: paths like modules[web] must not be read as Rich markup.
    return safe_text(text.removesuffix("...").strip())


def print_plan(plan: dict[str, Any]) -> None:
    for change in plan["deployments"]:
        style = {"create": "green", "update": "yellow", "delete": "red"}.get(
            change["action"], "dim"
        )
        console.print(f"deployment/{change['name']}  [{style}]{change['action']}[/{style}]")
    for kind, names in (
        ("claim", plan.get("claims", [])),
        ("releasekey", plan.get("release_keys", [])),
    ):
        for name in names:
            console.print(f"{kind}/{name}  [cyan]apply[/cyan]")
    devices = plan["devices"]
    if not devices:
        console.print("No device's desired state changes.")
        return
    console.print(f"\n[bold]{len(devices)} device(s) change[/bold]")
    # Devices with the same field-level diff are shown once, as a group.
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for device in devices:
        groups[repr(device["changes"])].append(device)
    for members in groups.values():
        names = safe_text(", ".join(d["name"] for d in members[:8]))
        more = f" and {len(members) - 8} more" if len(members) > 8 else ""
        first = members[0]
        console.print(
            f"  [bold]{names}{more}[/bold]  {_short(first['from_revision'])} → "
            f"{_short(first['to_revision'])}",
            highlight=False,
        )
        for change in first["changes"]:
            mark = {"add": "[green]+[/green]", "remove": "[red]-[/red]"}.get(
                change["op"], "[yellow]~[/yellow]"
            )
            if change["op"] == "change":
                detail = f"{_render_value(change['old'])} → {_render_value(change['new'])}"
            else:
                detail = _render_value(change["new"] if change["op"] == "add" else change["old"])
            path = safe_text(change["path"])
            console.print(f"      {mark} {path}: {detail}", highlight=False, soft_wrap=True)


def _has_changes(plan: dict[str, Any]) -> bool:
    return bool(plan["devices"]) or any(d["action"] != "unchanged" for d in plan["deployments"])


def print_rollout_policies(body: dict[str, Any], plan: dict[str, Any]) -> None:
    """One line per changed deployment: the rollout policy its devices would follow."""
    try:
        manifests = load_manifests([ManifestSource(f["name"], f["text"]) for f in body["files"]])
    except ManifestError:  # the hub accepted them; a local parse problem only loses this hint
        return
    policies = {d.name: d.rollout for d in manifests.deployments}
    for change in plan["deployments"]:
        if change["action"] not in ("create", "update") or change["name"] not in policies:
            continue
        block = policies[change["name"]]
        if not block:
            text = "one wave of all devices (no spec.rollout)"
        else:
            raw = block.get("waves")
            waves = ", ".join(str(w) for w in raw) if isinstance(raw, list | tuple) else "100%"
            text = f"waves [{waves}], onFailure {block.get('onFailure', 'pause')}"
        console.print(f"deployment/{change['name']}  rollout: {safe_text(text)}", highlight=False)


def plan(
    filename: FileOpt,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    prune: PruneOpt = False,
    output: OutputOpt = None,
) -> None:
    """Preview what `apply` would change, per deployment and device.

    Exit code 0: nothing would change; 2: changes pending (for CI gates); 1: error.
    """
    body = _request(filename, prune)
    result = _send("/v1/manifests/plan", hub, token, ca, body)
    # Plans are read by people in CI logs too: text unless JSON is asked for.
    if output is Output.json:
        print_json(result)
    else:
        print_plan(result)
        print_rollout_policies(body, result)
    raise typer.Exit(2 if _has_changes(result) else 0)


def apply(
    filename: FileOpt,
    hub: HubOpt,
    token: TokenOpt = None,
    ca: CaOpt = None,
    prune: PruneOpt = False,
    output: OutputOpt = None,
) -> None:
    """Apply manifests: every document valid and applied, or none."""
    result = _send("/v1/manifests/apply", hub, token, ca, _request(filename, prune))
    if output is Output.json:
        print_json(result)
        return
    print_plan(result["plan"])
    for name, claim_token in result.get("new_claim_tokens", {}).items():
        console.print(
            f"claim/{name} token (shown once): {claim_token}", highlight=False, soft_wrap=True
        )
    console.print("[green]applied[/green]")


DEPLOYMENT_COLUMNS = [
    ("name", "NAME"),
    ("priority", "PRIORITY"),
    ("selector", "SELECTOR"),
    ("devices", "DEVICES"),
    ("applied", "APPLIED"),
    ("applied_by", "BY"),
]


def _selector_text(document: dict[str, Any]) -> str:
    selector = document.get("spec", {}).get("selector", {})
    parts = [f"{k}={v}" for k, v in sorted(selector.get("matchLabels", {}).items())]
    for expr in selector.get("matchExpressions", []):
        values = ",".join(expr.get("values", []))
        parts.append(
            f"{expr['key']} {expr['operator']} ({values})"
            if values
            else f"{expr['operator']} {expr['key']}"
        )
    return "; ".join(parts) or "(all devices)"


@get_app.command("deployments")
def get_deployments(
    hub: HubOpt, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List applied deployments with how many devices each selects."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/deployments")
    if not wants_json(output):
        rows = [
            {**r, "selector": _selector_text(r["document"]), "applied": ago(r["applied_at"])}
            for r in rows
        ]
    print_rows(rows, DEPLOYMENT_COLUMNS, output)


@get_app.command("deployment")
def get_deployment(
    name: str, hub: HubOpt, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """Print one deployment as the YAML document that was applied."""
    with connect(hub, token, ca) as client:
        row = client.get(f"/v1/deployments/{name}")
    if output is not None and wants_json(output):
        print_json(row)
    else:
        typer.echo(yaml.safe_dump(row["document"], sort_keys=False).rstrip())


@delete_app.command("deployment")
def delete_deployment(name: str, hub: HubOpt, token: TokenOpt = None, ca: CaOpt = None) -> None:
    """Delete a deployment; the devices it selected get their new desired state."""
    with connect(hub, token, ca) as client:
        client.delete(f"/v1/deployments/{name}")
    err_console.print(f"deployment/{name} deleted")
