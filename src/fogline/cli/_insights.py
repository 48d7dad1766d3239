"""`fogline insights ls`: forecasts, devices unlike their peers, failures grouped,
and the self-healing actions the hub took."""

from typing import Any

import typer

from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    ago,
    connect,
    print_json,
    print_rows,
    wants_json,
)

app = typer.Typer(
    help="What the hub concludes from device health: disks and memory forecast to fill, "
    "devices unlike their peers, failing devices grouped by what they share, and the "
    "self-healing actions it took (restarts, quarantines) in the last 24 h.",
    no_args_is_help=True,
)

INSIGHT_COLUMNS = [
    ("type", "TYPE"),
    ("subject", "SUBJECT"),
    ("detail", "DETAIL"),
    ("since", "SINCE"),
]


def insight_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """One table: groups first (they stand for many alerts), then the
    self-healing actions (newest first), forecasts, anomalies."""
    rows = [
        {
            "type": f"group: {g['kind']}",
            "subject": f"{g['count']} devices",
            "detail": g["summary"],
            "since": "",
        }
        for g in found["groups"]
    ]
    rows.extend(
        {
            "type": f"self-healing: {a['action']}",
            "subject": a["device"] if not a.get("module") else f"{a['device']}/{a['module']}",
            "detail": f"{a['detail']} (audit #{a['audit_seq']})",
            "since": ago(a["at"]),
        }
        for a in found.get("actions", [])
    )
    for key in ("forecasts", "anomalies"):
        rows.extend(
            {
                "type": item["kind"],
                "subject": item["device"],
                "detail": item["detail"],
                "since": ago(item["raised_at"]),
            }
            for item in found[key]
        )
    return rows


@app.command("ls")
def ls(
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """List insights: failure groups, self-healing actions, forecasts and peer anomalies."""
    with connect(hub, token, ca) as client:
        found = client.get("/v1/insights")
    if wants_json(output):
        print_json(found)
        return
    print_rows(insight_rows(found), INSIGHT_COLUMNS, output)
