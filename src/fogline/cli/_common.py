"""What every operator command shares: hub options, output format, tables."""

import datetime as dt
import enum
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fogline._errors import FoglineError
from fogline._text import visible

from ._client import HubClient, HubConnection
from ._contexts import load_contexts, resolve_connection
from ._flags import LogFormatOpt as LogFormatOpt

console = Console()
err_console = Console(stderr=True)


class Output(enum.StrEnum):
    table = "table"
    json = "json"


HubOpt = Annotated[
    str | None,
    typer.Option(
        "--hub",
        envvar="FOGLINE_HUB",
        help="Hub URL, e.g. https://127.0.0.1:8443 (default: the current context, see "
        "`fogline login`).",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="FOGLINE_TOKEN",
        help="Operator bearer token (default: the current context's).",
        show_default=False,
    ),
]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        envvar="FOGLINE_CA",
        help="The fleet CA certificate, the hub's DIR/ca.pem (default: the current context's).",
        show_default=False,
    ),
]
ClaimFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--claim-file",
        help="A file (mode 0600) holding the claim token for the first enrollment. "
        "Or set FOGLINE_CLAIM. Never on the command line, which every user can read.",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Output | None,
    typer.Option("--output", "-o", help="table (default on a terminal) or json."),
]


def claim_from_env(claim_file: Path | None) -> str | None:
    """FOGLINE_CLAIM's token, or None (then --claim-file, if given, holds it).

    Raises:
        typer.BadParameter: both FOGLINE_CLAIM and --claim-file are given.
    """
    claim = os.environ.get("FOGLINE_CLAIM", "").strip() or None
    if claim and claim_file is not None:
        raise typer.BadParameter(
            "give the claim once: --claim-file or FOGLINE_CLAIM, not both",
            param_hint="--claim-file",
        )
    return claim


def connect(hub: str | None, token: str | None, ca: Path | None) -> HubClient:
    """A client for the hub that the options, the environment or the current context name.

    Raises:
        FoglineError: no hub or no token from any of them; the CA file is missing.
        ContextError: the config file is unsafe or malformed.
    """
    conn = resolve_connection(hub, token, ca, load_contexts())
    if not conn.hub:
        raise FoglineError(
            "no hub: pass --hub URL, set FOGLINE_HUB, or store one with "
            "`fogline login --hub URL --ca FILE --token-file FILE`"
        )
    if not conn.token:
        raise FoglineError(
            "no operator token: pass --token, set FOGLINE_TOKEN, or store one with "
            "`fogline login` (the hub's first token is in its DIR/admin-token)"
        )
    return HubConnection(conn.hub, conn.token, conn.ca).client()


def wants_json(output: Output | None) -> bool:
    if output is None:
        return not sys.stdout.isatty()
    return output is Output.json


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def safe_text(value: object, *, markup: bool = True) -> str:
    """`value` as text that cannot drive the operator's terminal.

    Control characters are shown as escapes (ESC as `\\x1b`); with `markup`
    (text that goes through Rich: tables, `console.print`) Rich markup such
    as `[red]` is escaped too, so it prints as written. Everything a device
    chose (names, hostnames, labels, errors, module logs) is printed through
    here; JSON output does not need it (JSON escapes control characters).
    """
    text = visible(str(value))
    return escape(text) if markup else text


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], output: Output | None
) -> None:
    """Print `rows` as JSON (data only) or a Rich table of `columns` (key, title)."""
    if wants_json(output):
        print_json(list(rows))
        return
    table = Table(show_edge=False, pad_edge=False)
    for _, title in columns:
        # Folded, never cut with an ellipsis: a table must not hide data.
        table.add_column(title, overflow="fold")
    for row in rows:
        table.add_row(*(safe_text(format_cell(row.get(key))) for key, _ in columns))
    console.print(table)


def ago(timestamp: str | None) -> str:
    """`2026-11-24T21:30:00Z` as `12s ago` (or `in 364d` for a time ahead), for tables."""
    if not timestamp:
        return "never"
    then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    # A few seconds ahead is two clocks disagreeing, not the future.
    ahead, seconds = seconds < -5, abs(seconds) if seconds < -5 else max(0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or unit == "s":
            amount = f"{seconds // size}{unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    raise AssertionError("unreachable")


def format_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)
