"""`fogline audit ls`: who did what to the fleet, and when."""

from typing import Annotated, Any

import orjson
import typer

from ._common import CaOpt, HubOpt, OutputOpt, TokenOpt, connect, print_rows, wants_json

app = typer.Typer(help="The audit log: applies, rollouts, waves, operator actions.")


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value) or "(none)"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # numbers, booleans: as JSON writes them


def detail_text(detail: dict[str, Any]) -> str:
    """`deployments: web=create · devices changed: 1`: every field, in words, uncut.

    Fields are joined with ` · `: reasons often hold `;` and `,` themselves.
    """
    return " · ".join(
        f"{key.replace('_', ' ')}: {_value_text(value)}"
        for key, value in detail.items()
        if value not in (None, [], {})  # nothing to say: `remove: (none)` is noise
    )


@app.command("ls")
def ls(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
    since: Annotated[
        str | None, typer.Option(help="A duration (1h, 30m) or an ISO 8601 timestamp.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many (the newest).")] = 200,
) -> None:
    """List audit entries, oldest first."""
    params: dict[str, str | int] = {"limit": limit}
    if since:
        params["since"] = since
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/audit", params=params)
    if not wants_json(output):
        rows = [
            {
                **row,
                "at": str(row["at"]).split(".")[0].removesuffix("Z") + "Z",
                "details": detail_text(row["detail"] or {}),
            }
            for row in rows
        ]
    print_rows(
        rows,
        [
            ("at", "AT (UTC)"),
            ("actor", "WHO"),
            ("action", "ACTION"),
            ("target", "TARGET"),
            ("details", "DETAILS"),
        ],
        output,
    )
