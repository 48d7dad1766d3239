"""`fogline hub serve --artifact-offload` (checked in `_hub_main`) and
`fogline hub nginx-config`: devices download artifacts from nginx, the hub
only authorises them."""

from typing import Annotated

import typer

from ._flags import DataDirOpt
from ._hub_main import offload_secret_made

ArtifactOffloadOpt = Annotated[
    str | None,
    typer.Option(
        "--artifact-offload",
        help="Redirect devices' artifact and delta downloads, once authorised, to nginx at "
        "this https://HOST[:PORT] (307 to a URL signed for 5 minutes with "
        "DATA_DIR/artifact-offload-secret, made 0600 on first use); configure nginx with "
        "`fogline hub nginx-config`. HOST must be in the hub's certificate (--san). "
        "Default: the hub serves the bytes itself.",
        show_default=False,
    ),
]


def nginx_config_command(
    data_dir: DataDirOpt,
    listen: Annotated[
        str, typer.Option(help="Where nginx listens for devices: [HOST:]PORT.")
    ] = "8444",
    server_name: Annotated[
        str,
        typer.Option(help="nginx's server_name: the HOST of --artifact-offload."),
    ] = "_",
) -> None:
    """Print an nginx `server` block that serves DATA_DIR/artifacts to the
    URLs a hub started with --artifact-offload signs, and nothing else.

    Put it in nginx's `http` context. It names the hub's TLS certificate and
    key (devices already trust its CA) and holds the offload secret, so keep
    it readable by root only; nginx's workers must be able to read
    DATA_DIR/artifacts (run them as the hub's user). See docs/operations.md.
    """
    from fogline.hub.releases import NginxSite, OffloadConfigError, nginx_server_block

    # Errors (OffloadConfigError) reach the CLI's one-line error path, exit 1.
    cert, key = data_dir / "tls" / "hub.pem", data_dir / "tls" / "hub-key.pem"
    if not cert.is_file() or not key.is_file():
        raise OffloadConfigError(
            f"no hub certificate in {data_dir / 'tls'}: start `fogline hub serve "
            f"--data-dir {data_dir}` once first"
        )
    site = NginxSite(
        data_dir / "artifacts", listen, server_name, cert, key, offload_secret_made(data_dir)
    )
    typer.echo(nginx_server_block(site), nl=False)
