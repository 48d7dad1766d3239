"""`fogline users ...`, `fogline tokens ...` and `fogline whoami`: people and roles.

    fogline users add alice --role operator --scope site=berlin
    fogline tokens create --user alice --name laptop --expires 30d > alice.token
    fogline login --hub https://hub:8443 --ca ca.pem --token-file alice.token   # as alice
    fogline whoami

A token is printed once, alone on stdout, when it is created; the hub keeps
only its hash. A password is read from stdin (`--password-stdin`), never
from the command line, which every user of the machine can read.
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import quote

import typer

from fogline._duration import parse_duration

from ._common import (
    CaOpt,
    HubOpt,
    OutputOpt,
    TokenOpt,
    ago,
    connect,
    console,
    format_cell,
    print_json,
    print_rows,
    safe_text,
    wants_json,
)

if TYPE_CHECKING:
    from fogline.protocol import RoleName

users_app = typer.Typer(help="Users and their roles (admin only).", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens: created with a name and a lifetime, shown once, revocable (admin only).",
    no_args_is_help=True,
)

MAX_PASSWORD_CHARS: Final = 1024
USER_COLUMNS: Final = [
    ("name", "NAME"),
    ("role", "ROLE"),
    ("scope", "SCOPE"),
    ("tokens", "TOKENS"),
    ("password", "PASSWORD"),
    ("created_by", "CREATED BY"),
]
TOKEN_COLUMNS: Final = [
    ("id", "ID"),
    ("user", "USER"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("expires", "EXPIRES"),
    ("last_used", "LAST USED"),
    ("created_by", "CREATED BY"),
]

NameArg = Annotated[str, typer.Argument(help="User name: lowercase letters, digits, . _ @ -.")]
RoleOpt = Annotated[
    str,
    typer.Option(help="viewer, operator, release-manager or admin (see docs/security.md)."),
]
ScopeOpt = Annotated[
    str,
    typer.Option(
        help="Labels the role is limited to, k=v,k2=v2 (e.g. site=berlin): it changes only "
        "devices and deployments inside them. Default: the whole fleet.",
    ),
]


def _role(text: str) -> "RoleName":
    roles: tuple[RoleName, ...] = ("viewer", "operator", "release-manager", "admin")
    for role in roles:
        if text == role:
            return role
    raise typer.BadParameter(
        f"expected one of {', '.join(roles)}, got {text!r}", param_hint="--role"
    )


def _scope(text: str) -> dict[str, str] | None:
    from fogline.protocol import parse_labels

    try:
        return parse_labels(text) or None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None


def _read_password() -> str:
    """The password on stdin: its first line, without the newline."""
    text = sys.stdin.read(MAX_PASSWORD_CHARS + 2)
    password = text.split("\n", 1)[0].removesuffix("\r")
    if not 8 <= len(password) <= MAX_PASSWORD_CHARS:
        raise typer.BadParameter(
            f"the password on stdin must be 8 to {MAX_PASSWORD_CHARS} characters",
            param_hint="--password-stdin",
        )
    return password


def _user_rows(rows: list[dict[str, Any]], output: Any) -> list[dict[str, Any]]:
    if wants_json(output):
        return rows
    return [{**row, "password": "set" if row.get("has_password") else "-"} for row in rows]


def _token_rows(rows: list[dict[str, Any]], output: Any) -> list[dict[str, Any]]:
    if wants_json(output):
        return rows
    return [
        {
            **row,
            "user": row.get("user") or "(bootstrap)",
            "expires": ago(row.get("expires_at")) if row.get("expires_at") else "never",
            "last_used": ago(row.get("last_used_at")),
        }
        for row in rows
    ]


@users_app.command("add")
def users_add(
    name: NameArg,
    role: RoleOpt,
    scope: ScopeOpt = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a console password from stdin.")
    ] = False,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Add a user with a role (and a scope). Give it a token with `fogline tokens create`."""
    body: dict[str, Any] = {"name": name, "role": _role(role), "scope": _scope(scope)}
    if password_stdin:
        body["password"] = _read_password()
    with connect(hub, token, ca) as client:
        row = client.post("/v1/users", json=body)
    print_rows(_user_rows([row], output), USER_COLUMNS, output)


@users_app.command("ls")
def users_ls(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """List users with their role, scope and active tokens."""
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/users")
    print_rows(_user_rows(rows, output), USER_COLUMNS, output)


@users_app.command("rm")
def users_rm(
    name: NameArg,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Remove a user; its tokens are refused from their next request on."""
    with connect(hub, token, ca) as client:
        row = client.delete(f"/v1/users/{quote(name, safe='')}")
    print_rows(_user_rows([row], output), USER_COLUMNS, output)


@users_app.command("set-role")
def users_set_role(
    name: NameArg,
    role: Annotated[str, typer.Argument(help="viewer, operator, release-manager or admin.")],
    scope: ScopeOpt = "",
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Give a user another role (and scope; none given: the whole fleet). Its
    tokens act with it from their next request."""
    body = {"role": _role(role), "scope": _scope(scope)}
    with connect(hub, token, ca) as client:
        row = client.patch(f"/v1/users/{quote(name, safe='')}", json=body)
    print_rows(_user_rows([row], output), USER_COLUMNS, output)


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Option(help="The user the token acts as.")],
    name: Annotated[str, typer.Option(help="A name to tell it apart: laptop, ci-deploy.")],
    expires: Annotated[str, typer.Option(help="Lifetime, e.g. 12h, 30d (at most 366d).")] = "30d",
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Create a token and print it alone on stdout, once: redirect it to a file
    (it is never shown again), then `fogline login --token-file FILE`."""
    try:
        lifetime_s = parse_duration(expires)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires") from None
    body = {"user": user, "name": name, "expires_in_s": lifetime_s}
    with connect(hub, token, ca) as client:
        created = client.post("/v1/tokens", json=body)
    if output is not None and wants_json(output):
        print_json(created)
    else:
        typer.echo(created["token"])


@tokens_app.command("ls")
def tokens_ls(
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """List tokens, newest first: status, expiry, last use. Never the token itself."""
    params = {"user": user} if user else {}
    with connect(hub, token, ca) as client:
        rows = client.get("/v1/tokens", params=params)
    print_rows(_token_rows(rows, output), TOKEN_COLUMNS, output)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `fogline tokens ls`).")],
    hub: HubOpt = None,
    token: TokenOpt = None,
    ca: CaOpt = None,
    output: OutputOpt = None,
) -> None:
    """Revoke a token: refused from its next request on."""
    with connect(hub, token, ca) as client:
        row = client.post(f"/v1/tokens/{quote(token_id, safe='')}/revoke")
    print_rows(_token_rows([row], output), TOKEN_COLUMNS, output)


def whoami(
    hub: HubOpt = None, token: TokenOpt = None, ca: CaOpt = None, output: OutputOpt = None
) -> None:
    """Who the hub takes you for: name, role, scope, and the token's expiry."""
    with connect(hub, token, ca) as client:
        me = client.get("/v1/whoami")
    if wants_json(output):
        print_json(me)
        return
    scope = format_cell(me.get("scope")) if me.get("scope") else "the whole fleet"
    expires = me["token"].get("expires_at")
    lines = [
        f"name:   {me['name']}",
        f"role:   {me['role']}",
        f"scope:  {scope}",
        f"token:  {me['token']['name']} ({me['token']['id']}), "
        f"expires {ago(expires) if expires else 'never'}",
        f"may:    {', '.join(me.get('permissions') or []) or '-'}",
    ]
    for line in lines:
        console.print(safe_text(line), highlight=False, soft_wrap=True)
