"""`fogline plan|apply|get|delete`: fleet manifests as code."""

from typing import Annotated, Any

import typer
import yaml

from fogline.hubclient import HubRejectedError
from fogline.manifest import ManifestError, Problem, read_sources

from ._client import HubClient
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
from ._format import durations_in, plural
from ._plan import print_plan, print_rollout_policies

FileOpt = Annotated[
    list[str],
    typer.Option(
        "--filename", "-f", help="A manifest file, a directory of *.yaml, or - for stdin."
    ),
]
PruneOpt = Annotated[
    bool,
    typer.Option(
        "--prune",
        help="Also delete every Deployment on the hub that the given files do not declare. "
        "Only Deployments: claims and release keys are never pruned (revoke a claim with "
        "`fogline claim revoke`).",
    ),
]

get_app = typer.Typer(help="Show applied manifests.", no_args_is_help=True)
delete_app = typer.Typer(help="Delete applied manifests.", no_args_is_help=True)


def _request(filenames: list[str], prune: bool) -> dict[str, Any]:
    sources = [source for name in filenames for source in read_sources(name)]
    if not sources:
        raise ManifestError([Problem(filenames[0], 1, 1, "", "no *.yaml or *.yml files found")])
    return {"files": [{"name": s.name, "text": s.text} for s in sources], "prune": prune}


def _send(client: HubClient, path: str, body: dict[str, Any]) -> Any:
    try:
        return client.post(path, json=body)
    except HubRejectedError as exc:
        if exc.code != "invalid_manifest":
            raise
        for line in exc.message.splitlines():
            err_console.print(
                f"[red]error[/red]: {safe_text(line)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None


def _has_changes(plan: dict[str, Any]) -> bool:
    return bool(plan["devices"]) or any(d["action"] != "unchanged" for d in plan["deployments"])


def plan(
    filename: FileOpt,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    prune: PruneOpt = False,
    output: OutputOpt = None,
) -> None:
    """Preview what `apply` would change, per deployment and device.

    Exit code 0: nothing would change; 2: changes pending (for CI gates); 1: error.
    """
    body = _request(filename, prune)
    with connect(hub, token, ca) as client:
        result = _send(client, "/v1/manifests/plan", body)
    # Plans are read by people in CI logs too: text unless JSON is asked for.
    if output is Output.json:
        print_json(result)
    else:
        print_plan(result)
        print_rollout_policies(body, result)
    raise typer.Exit(2 if _has_changes(result) else 0)


def _started_rollouts(client: HubClient, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rollouts this apply started, as the hub named them in its answer."""
    return [dict(client.get(f"/v1/rollouts/{rid}")) for rid in result.get("rollouts") or []]


def _print_rollout(view: dict[str, Any]) -> None:
    waves = view.get("waves_total") or 1
    line = (
        f"rollout {view['id']} started: {plural(view.get('devices') or 0, 'device')} in "
        f"{plural(waves, 'wave')} ({durations_in(str(view.get('policy') or ''))})"
    )
    console.print(safe_text(line), highlight=False, soft_wrap=True)
    console.print(
        f"  follow it: fogline rollout status {safe_text(view['id'])} --watch  "
        "(pause, resume, abort or rollback it the same way)",
        highlight=False,
        soft_wrap=True,
    )


def apply(
    filename: FileOpt,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    prune: PruneOpt = False,
    output: OutputOpt = None,
) -> None:
    """Apply manifests: every document valid and applied, or none.

    A change to some devices' desired state starts a rollout; `apply` prints
    its id and returns at once (follow it with `fogline rollout status ID --watch`).
    """
    with connect(hub, token, ca) as client:
        result = _send(client, "/v1/manifests/apply", _request(filename, prune))
        rollouts = _started_rollouts(client, result)
    if output is Output.json:
        print_json(result)
        return
    print_plan(result["plan"])
    for name, claim_token in result.get("new_claim_tokens", {}).items():
        console.print(
            f"claim/{name} token (shown once): {claim_token}", highlight=False, soft_wrap=True
        )
    console.print("[green]applied[/green]")
    for rollout in rollouts:
        _print_rollout(rollout)


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
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
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
    name: str,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Print one deployment as the YAML document that was applied."""
    with connect(hub, token, ca) as client:
        row = client.get(f"/v1/deployments/{name}")
    if output is not None and wants_json(output):
        print_json(row)
    else:
        typer.echo(yaml.safe_dump(row["document"], sort_keys=False).rstrip())


@delete_app.command("deployment")
def delete_deployment(
    name: str, hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None
) -> None:
    """Delete a deployment; the devices it selected get their new desired state."""
    with connect(hub, token, ca) as client:
        client.delete(f"/v1/deployments/{name}")
    err_console.print(f"deployment/{name} deleted")


RELEASE_KEY_COLUMNS = [
    ("name", "NAME"),
    ("key_id", "KEY ID"),
    ("modules", "MODULES"),
    ("applied", "APPLIED"),
]


@get_app.command("releasekeys")
def get_release_keys(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List applied ReleaseKeys: name, key id, the modules each may sign."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/releasekeys")
    if not wants_json(output):
        rows = [
            {
                **r,
                "modules": ", ".join(r["modules"]) if r["modules"] is not None else "(any)",
                "applied": ago(r["applied_at"]),
            }
            for r in rows
        ]
    print_rows(rows, RELEASE_KEY_COLUMNS, output)


@delete_app.command("releasekey")
def delete_release_key(
    name: str, hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None
) -> None:
    """Delete a ReleaseKey: the hub refuses pushes signed by it from now on.

    Refused while a deployment pins a release it signed (nodes verify that
    release with it). Nodes enrolled earlier keep the key they pinned then.
    """
    with connect(hub, token, ca) as client:
        answer = client.delete(f"/v1/releasekeys/{name}")
    err_console.print(f"releasekey/{safe_text(name)} deleted", highlight=False)
    for rollout in (answer or {}).get("rollouts") or []:
        err_console.print(
            f"rollout {safe_text(rollout)} started: devices get documents without the key",
            highlight=False,
        )


POLICY_COLUMNS = [
    ("name", "NAME"),
    ("blockAt", "BLOCK AT"),
    ("onPush", "ON PUSH"),
    ("modules", "MODULES"),
    ("selector", "SELECTOR"),
    ("exceptions", "EXCEPTIONS"),
    ("applied", "APPLIED"),
]


@get_app.command("vulnerabilitypolicies")
def get_vulnerability_policies(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List applied VulnerabilityPolicies: threshold, push action, modules, selector, exceptions."""
    with connect(hub, token, ca) as client:
        documents = client.get("/v1/vulnpolicies")
    if wants_json(output):
        print_rows(documents, POLICY_COLUMNS, output)
        return
    rows = [
        {
            "name": d["metadata"]["name"],
            "blockAt": d["spec"]["blockAt"],
            "onPush": d["spec"]["onPush"],
            "modules": ", ".join(d["spec"].get("modules") or ["(any)"]),
            "selector": _selector_text(d),
            "exceptions": ", ".join(
                f"{e['advisory']} until {e['expires']}" for e in d["spec"]["exceptions"]
            )
            or "-",
            "applied": f"{ago(d['applied_at'])} by {d['applied_by']}",
        }
        for d in documents
    ]
    print_rows(rows, POLICY_COLUMNS, output)


@delete_app.command("vulnerabilitypolicy")
def delete_vulnerability_policy(
    name: str, hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None
) -> None:
    """Delete a VulnerabilityPolicy: what it blocked is no longer blocked (audited)."""
    with connect(hub, token, ca) as client:
        client.delete(f"/v1/vulnpolicies/{name}")
    err_console.print(f"vulnerabilitypolicy/{safe_text(name)} deleted", highlight=False)
