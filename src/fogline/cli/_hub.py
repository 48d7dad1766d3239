"""`fogline hub ...`: run the cloud tier."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the hub (cloud tier).", no_args_is_help=True)


@app.command("serve")
def serve_command(
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="Where the CA, TLS files, token and SQLite database live."),
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="FOGLINE_DB",
            help="Database URL, e.g. postgresql+psycopg://u@host/db (default: SQLite in DATA_DIR).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port.")] = 8443,
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="Extra DNS name or IP for the hub's certificate (repeatable)."),
    ] = None,
    report_interval: Annotated[float, typer.Option(help="Seconds between agent reports.")] = 10.0,
    telemetry_retention: Annotated[
        str, typer.Option(help="How long telemetry is kept, e.g. 7d, 12h.")
    ] = "7d",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving the port (one Python process uses one core); "
            "e.g. the number of cores.",
        ),
    ] = 1,
) -> None:
    """Serve the hub API over HTTPS (mTLS for devices, tokens for operators).

    The first start creates the fleet CA (DATA_DIR/ca.pem), the hub's TLS
    certificate and an admin token, written only to DATA_DIR/admin-token
    (0600; never printed). Replace it with `fogline hub rotate-admin-token`.
    """
    # Imported here: operator commands should not pay for the hub's imports.
    from fogline.hub import HubSettings, ServeOptions, serve
    from fogline.manifest import parse_duration

    try:
        retention_s = parse_duration(telemetry_retention)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--telemetry-retention") from None
    settings = HubSettings(
        report_interval_s=report_interval,
        offline_after_s=report_interval * 3.5,
        telemetry_retention_s=retention_s,
    )
    serve(ServeOptions(data_dir, db, host, port, san or [], settings, log_level, workers))


@app.command("rotate-admin-token")
def rotate_admin_token_command(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The hub's data directory (as for serve).")
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="FOGLINE_DB",
            help="Database URL, as for serve (default: SQLite in DATA_DIR).",
        ),
    ] = None,
) -> None:
    """Revoke the admin token and write a new one to DATA_DIR/admin-token (0600).

    Works while the hub runs: the old token is refused from the next request.
    The new token is never printed; read it from the file.
    """
    from fogline.hub import rotate_admin_token_file

    path = rotate_admin_token_file(data_dir, db)
    typer.echo(f"admin token rotated; the new token is in {path}", err=True)
