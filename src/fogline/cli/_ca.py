"""`fogline ca ...`: rotate the fleet CA, then retire the old one.

Run on the hub's host, on its data directory and database, like
`fogline hub rotate-admin-token`: the CA key never travels over the API.
"""

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, err_console
from ._flags import CaPassphraseOpt as CaPassphraseOpt
from ._flags import DataDirOpt as DataDirOpt

app = typer.Typer(help="The fleet CA: rotate it, retire the old one.", no_args_is_help=True)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="FOGLINE_DB",
        help="Database URL, as for serve (default: SQLite in DATA_DIR).",
    ),
]


def read_passphrase(path: Path | None) -> bytes | None:
    """The passphrase in `path` (checked like a token file: 0600, bounded).

    Raises:
        TokenFileError: the file is missing, open to others, empty or too large.
    """
    from fogline.security import read_token_file

    return read_token_file(path).encode() if path is not None else None


@app.command("rotate")
def rotate_command(
    data_dir: DataDirOpt, db: DbOpt = None, ca_key_passphrase_file: CaPassphraseOpt = None
) -> None:
    """Create a new fleet CA; the hub trusts the old and the new one until
    `fogline ca retire-old`, and agents renew onto the new one on their own."""
    from fogline.hub import rotate_ca

    key_id = rotate_ca(data_dir, db, read_passphrase(ca_key_passphrase_file))
    console.print(f"new CA {key_id}: devices renew onto it; then run `fogline ca retire-old`")


@app.command("retire-old")
def retire_old_command(
    data_dir: DataDirOpt,
    db: DbOpt = None,
    ca_key_passphrase_file: CaPassphraseOpt = None,
    online_within: Annotated[
        str, typer.Option(help="A device seen this recently counts as online, e.g. 5m.")
    ] = "5m",
    force: Annotated[
        bool,
        typer.Option(
            help="Retire even though online devices have not moved (they will need a claim)."
        ),
    ] = False,
) -> None:
    """End a CA rotation's overlap once every online device renewed onto the
    new CA; otherwise refuse and list the devices that have not."""
    import datetime as dt

    from fogline._duration import parse_duration
    from fogline.hub import retire_old_ca

    try:
        within = dt.timedelta(seconds=parse_duration(online_within))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--online-within") from None
    result = retire_old_ca(
        data_dir, db, read_passphrase(ca_key_passphrase_file), online_within=within, force=force
    )
    online = [s for s in result.stragglers if s.online]
    offline = [s for s in result.stragglers if not s.online]
    if not result.retired:
        names = ", ".join(s.name for s in online)
        err_console.print(
            f"error: {len(online)} online device(s) still on the old CA: {names}; "
            "wait for them to renew, or pass --force",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if result.stragglers:
        names = ", ".join(s.name for s in result.stragglers)
        err_console.print(
            f"warning: {len(online)} online and {len(offline)} offline device(s) were not on "
            f"the new CA and need a claim to come back: {names}",
            highlight=False,
            soft_wrap=True,
        )
    console.print("old CA retired: the hub trusts and serves the new CA alone")
