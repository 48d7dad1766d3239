"""`fogline claim ...`: provisioning claims for zero-touch enrollment."""

from typing import Annotated

import typer

from fogline.manifest import parse_duration
from fogline.protocol import parse_labels

from ._common import CaOpt, HubOpt, OutputOpt, TokenOpt, connect, print_json, print_rows, wants_json

app = typer.Typer(
    help="Provisioning claims: one token that can enroll many devices.", no_args_is_help=True
)

CLAIM_COLUMNS = [
    ("name", "NAME"),
    ("id", "ID"),
    ("status", "STATUS"),
    ("uses", "USES"),
    ("max_uses", "MAX"),
    ("labels", "LABELS"),
    ("names", "NAMES"),
    ("expires_at", "EXPIRES"),
]


@app.command("create")
def create(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    name: Annotated[
        str | None,
        typer.Option(help="A name to address it by (claim revoke NAME); lowercase, digits, '-'."),
    ] = None,
    labels: Annotated[
        str, typer.Option(help="Labels given to every device enrolled with it: k=v,k2=v2.")
    ] = "",
    names: Annotated[
        str,
        typer.Option(
            help="Device names it may enroll, comma-separated glob patterns: 'plant7-*'. "
            "Default: any name."
        ),
    ] = "",
    max_uses: Annotated[int, typer.Option(min=1, help="How many devices may enroll with it.")] = 1,
    expires: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 24h, 7d.")] = "24h",
    output: OutputOpt = None,
) -> None:
    """Create a claim and print its token alone on stdout (bake it into an image)."""
    try:
        body = {
            "name": name,
            "labels": parse_labels(labels),
            "names": [part.strip() for part in names.split(",") if part.strip()],
            "max_uses": max_uses,
            "expires_in_s": parse_duration(expires),
        }
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with connect(hub, token, ca) as client:
        created = client.post("/v1/claims", json=body)
    if output is not None and wants_json(output):
        print_json(created)
    else:
        typer.echo(created["token"])


@app.command("ls")
def list_(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List claims with their uses and status."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/claims")
    print_rows(rows, CLAIM_COLUMNS, output)


@app.command("revoke")
def revoke(
    ref: Annotated[str, typer.Argument(help="Claim id or name.")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Revoke a claim: no further device can enroll with it."""
    with connect(hub, token, ca) as client:
        row = client.post(f"/v1/claims/{ref}/revoke")
    print_rows([row], CLAIM_COLUMNS, output)
