"""`fogline login` and `fogline config use|ls|rm`: hubs as named contexts.

    fogline login --hub https://127.0.0.1:8443 --ca ./hub/ca.pem --token-file ./hub/admin-token
    fogline devices ls              # no FOGLINE_HUB, FOGLINE_TOKEN or FOGLINE_CA needed
    fogline config ls
    fogline config use plant7

The token is read from a file (or FOGLINE_TOKEN), never from the command
line, and is never printed. See `_contexts.py` for where it is stored.
"""

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from fogline._errors import FoglineError
from fogline.security import read_token_file

from ._client import HubConnection
from ._common import OutputOpt, console, err_console, print_json, print_rows, safe_text, wants_json
from ._contexts import NAME_RE, Context, load_contexts, save_contexts

app = typer.Typer(
    help="Stored hubs (contexts): list them, switch between them, remove one.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Context name (see `fogline config ls`).")]


def _default_name(hub: str) -> str:
    parts = urlsplit(hub)
    name = parts.hostname or "hub"
    if parts.port and parts.port != 443:
        name += f":{parts.port}"
    return name


def login(
    hub: Annotated[
        str,
        typer.Option("--hub", envvar="FOGLINE_HUB", help="Hub URL, e.g. https://127.0.0.1:8443."),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="A file (mode 0600) holding the operator token, e.g. the hub's "
            "DIR/admin-token. Default: FOGLINE_TOKEN. Never on the command line.",
            show_default=False,
        ),
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            envvar="FOGLINE_CA",
            help="The hub's CA certificate, DIR/ca.pem (omit for a hub with a publicly "
            "trusted certificate).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Name of the context (default: the hub's host:port).", show_default=False
        ),
    ] = None,
) -> None:
    """Check a hub URL, CA and token against the hub, then store them as the current context.

    Operator commands then need no --hub, --token or --ca (nor FOGLINE_HUB,
    FOGLINE_TOKEN, FOGLINE_CA), in every shell; options and variables still
    win when given. The token is stored 0600 and never printed.
    """
    if token_file is not None:
        token = read_token_file(token_file)  # TokenFileError: one line at the boundary
    else:
        token = os.environ.get("FOGLINE_TOKEN", "").strip()
        if not token:
            raise typer.BadParameter(
                "give the token in a file (e.g. the hub's DIR/admin-token) or FOGLINE_TOKEN",
                param_hint="--token-file",
            )
    if not hub.startswith(("https://", "http://")):
        raise typer.BadParameter("must be a URL like https://hub:8443", param_hint="--hub")
    context_name = name or _default_name(hub)
    if not NAME_RE.fullmatch(context_name):
        raise typer.BadParameter(
            "1-63 letters, digits and . _ : @ -, starting with a letter or digit",
            param_hint="--name",
        )
    ca_path = ca.expanduser().resolve() if ca is not None else None
    if ca_path is not None and not ca_path.is_file():
        raise FoglineError(f"{ca}: CA file not found (--ca / FOGLINE_CA)")
    # A context that does not work would only fail later, in another shell.
    with HubConnection(hub, token, ca_path).client(timeout_s=15) as client:
        me = client.get("/v1/whoami")
    user = str(me.get("name")) if isinstance(me, dict) and me.get("name") else None
    contexts = load_contexts()
    context = Context(context_name, hub.rstrip("/"), ca_path, token, user=user)
    save_contexts(contexts.with_context(context))
    role = str(me.get("role")) if isinstance(me, dict) else ""
    who = f"{user} ({role})" if user and role != user else (user or "")
    role = f" as {safe_text(who)}" if who else ""
    err_console.print(
        f"logged in to {safe_text(context.hub)}{role}; "
        f"context {safe_text(context_name)} is current (stored in {contexts.path}, mode 0600)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("ls")
def list_(output: OutputOpt = None) -> None:
    """List stored contexts; * marks the current one. Tokens are never shown."""
    contexts = load_contexts()
    rows = [
        {
            "current": c.name == contexts.current,
            "name": c.name,
            "hub": c.hub,
            "ca": str(c.ca) if c.ca else None,
            "user": c.user,
            "token": "stored" if c.token else "none",
        }
        for c in contexts.contexts
    ]
    if wants_json(output):
        print_json(rows)
        return
    if not rows:
        err_console.print(f"no contexts in {contexts.path}; add one with `fogline login`")
        return
    for row in rows:
        row["mark"] = "*" if row["current"] else ""
    print_rows(
        rows,
        [
            ("mark", "CURRENT"),
            ("name", "NAME"),
            ("hub", "HUB"),
            ("ca", "CA"),
            ("user", "USER"),
            ("token", "TOKEN"),
        ],
        output,
    )


@app.command("use")
def use(name: NameArg) -> None:
    """Make NAME the current context."""
    contexts = load_contexts()
    context = contexts.find(name)
    save_contexts(contexts.with_context(context))
    console.print(
        f"context {safe_text(name)} is current: {safe_text(context.hub)}", highlight=False
    )


@app.command("rm")
def remove(name: NameArg) -> None:
    """Remove a stored context and its token."""
    contexts = load_contexts()
    save_contexts(contexts.without(name))
    console.print(f"context {safe_text(name)} removed", highlight=False)
