"""`fogline hub ...`: run the cloud tier."""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from fogline._log import LOG_FORMAT_ENV

from ._backup import backup_command, restore_command
from ._flags import CaPassphraseOpt, LogFormatOpt
from ._hub_offload import ArtifactOffloadOpt, nginx_config_command
from ._options import OptionError

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
    health_raw_retention: Annotated[
        str, typer.Option(help="How long each report's health sample is kept, e.g. 24h.")
    ] = "24h",
    health_rollup_step: Annotated[
        str, typer.Option(help="The bucket health samples are rolled up into, e.g. 5m.")
    ] = "5m",
    health_rollup_retention: Annotated[
        str, typer.Option(help="How long health rollups are kept, e.g. 30d.")
    ] = "30d",
    alert_offline_after: Annotated[
        str, typer.Option(help="Alert when a device has not reported for this long, e.g. 5m.")
    ] = "5m",
    alert_disk_free_below: Annotated[
        str,
        typer.Option(
            help="Alert when less than this share of a device's data-dir filesystem is free, "
            "e.g. 10%."
        ),
    ] = "10%",
    alert_memory_used_above: Annotated[
        str,
        typer.Option(help="Alert when a device uses more than this share of its memory, e.g. 90%."),
    ] = "90%",
    alert_cert_expiry: Annotated[
        str,
        typer.Option(help="Alert when a device certificate expires within this long, e.g. 30d."),
    ] = "30d",
    alert_crash_loop_restarts: Annotated[
        int,
        typer.Option(
            min=0,
            max=1_000_000,
            help="Also raise crash-loop for a module restarted automatically this many times "
            "(its version's count); 0: only when the node reports it crash-looping.",
        ),
    ] = 0,
    alert_webhook: Annotated[
        str | None,
        typer.Option(help="POST each new alert as JSON to this http(s) URL (5 s timeout)."),
    ] = None,
    forecast_window: Annotated[
        str,
        typer.Option(
            help="The last hours of health a forecast fits a trend to (disk full, memory leaks), "
            "e.g. 6h; cut to --health-raw-retention."
        ),
    ] = "6h",
    forecast_min_span: Annotated[
        str, typer.Option(help="Samples this far apart at least before a forecast, e.g. 30m.")
    ] = "30m",
    forecast_horizon: Annotated[
        str,
        typer.Option(help="Alert when a disk or memory is forecast full within this (24h)."),
    ] = "24h",
    forecast_interval: Annotated[
        str, typer.Option(help="How often the forecast pass runs, e.g. 1m.")
    ] = "1m",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: LogFormatOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving the port (one Python process uses one core); "
            "e.g. the number of cores.",
        ),
    ] = 1,
    handshake_timeout: Annotated[
        float,
        typer.Option(min=0.1, max=300, help="Seconds from accept to a finished TLS handshake."),
    ] = 10.0,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=3600,
            help="Seconds a connection may wait with no request in progress, before its "
            "first request or between requests [default: 30, or 3 report intervals if longer].",
            show_default=False,
        ),
    ] = None,
    header_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, max=600, help="Seconds from a request's first byte to its complete head."
        ),
    ] = 20.0,
    body_timeout: Annotated[
        float,
        typer.Option(min=0.1, max=3600, help="Longest gap, in seconds, between body bytes."),
    ] = 30.0,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1,
            help="Open connections per worker process (lowered to fit the open-file limit).",
        ),
    ] = 32768,
    max_connections_per_address: Annotated[
        int,
        typer.Option(
            min=0,
            help="Open connections per client address (IPv6: per /64) and worker; 0: no cap. "
            "Raise it, or use 0, when many devices share one address (NAT, a TCP load balancer).",
        ),
    ] = 512,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            help="Also serve /metrics, without a token, over plain HTTP on this loopback "
            "HOST:PORT (e.g. 127.0.0.1:9464) for a local Prometheus.",
        ),
    ] = None,
    metrics_listen_public: Annotated[
        bool,
        typer.Option(help="Allow --metrics-listen on an address other than loopback."),
    ] = False,
    device_cert_validity: Annotated[
        str,
        typer.Option(
            help="Lifetime of device certificates, e.g. 365d, 90d; agents renew at two thirds."
        ),
    ] = "365d",
    ca_key_passphrase_file: CaPassphraseOpt = None,
    tuf_timestamp_expiry: Annotated[
        str,
        typer.Option(
            help="Lifetime of the TUF timestamp the hub signs online (renewed at half "
            "its life); a node refuses updates once the newest it can get has expired."
        ),
    ] = "1d",
    tuf_renew: Annotated[
        bool,
        typer.Option(hidden=True, help="Renew TUF snapshot and timestamp (off: a stale hub)."),
    ] = True,
    deltas: Annotated[
        bool,
        typer.Option(
            help="Serve nodes deltas from the release they have to the one they are sent "
            "(made on first request, cached under DATA_DIR/artifacts/deltas); "
            "off: every update downloads the full archive."
        ),
    ] = True,
    tls_tickets: Annotated[
        bool,
        typer.Option(
            help="Issue TLS session tickets, encrypted with keys every worker and replica "
            "derives from DATA_DIR/tls/ticket-secret, so a device that reconnects resumes "
            "instead of a full handshake; off: a full handshake per connection."
        ),
    ] = True,
    tls_ticket_period: Annotated[
        str,
        typer.Option(
            help="How long one ticket key is used (e.g. 1h); a ticket is accepted at most "
            "that long and not after the key changes."
        ),
    ] = "1h",
    tls_session_cache: Annotated[
        int,
        typer.Option(
            min=0,
            max=1_000_000,
            help="Stateful TLS 1.3 tickets: each worker keeps up to this many sessions in "
            "memory and a ticket is only a session id (cheaper to resume, but only on the "
            "worker that issued it); 0: stateless tickets.",
        ),
    ] = 0,
    artifact_offload: ArtifactOffloadOpt = None,
) -> None:
    """Serve the hub API over HTTPS (mTLS for devices, tokens for operators).

    The first start creates the fleet CA (DATA_DIR/ca.pem), the hub's TLS
    certificate and an admin token, written only to DATA_DIR/admin-token
    (0600; never printed). Replace it with `fogline hub rotate-admin-token`.
    """
    if log_format is not None:
        # The hub configures its logging itself, in every worker process:
        # the environment carries the choice to each of them.
        os.environ[LOG_FORMAT_ENV] = log_format.value
    # The hub's code is imported once, by the program this execs (_hub_main):
    # here only what the standard library can check (Typer's usage errors).
    from ._hub_main import exec_serve, serve_options
    from ._hub_options import HubOptions, check_options

    options = HubOptions(
        data_dir=data_dir,
        db=db,
        host=host,
        port=port,
        san=san or [],
        report_interval=report_interval,
        telemetry_retention=telemetry_retention,
        health_raw_retention=health_raw_retention,
        health_rollup_step=health_rollup_step,
        health_rollup_retention=health_rollup_retention,
        alert_offline_after=alert_offline_after,
        alert_disk_free_below=alert_disk_free_below,
        alert_memory_used_above=alert_memory_used_above,
        alert_cert_expiry=alert_cert_expiry,
        alert_crash_loop_restarts=alert_crash_loop_restarts,
        alert_webhook=alert_webhook,
        forecast_window=forecast_window,
        forecast_min_span=forecast_min_span,
        forecast_horizon=forecast_horizon,
        forecast_interval=forecast_interval,
        log_level=log_level,
        workers=workers,
        handshake_timeout=handshake_timeout,
        idle_timeout=idle_timeout,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
        max_connections_per_address=max_connections_per_address,
        metrics_listen=metrics_listen,
        metrics_listen_public=metrics_listen_public,
        device_cert_validity=device_cert_validity,
        ca_key_passphrase_file=ca_key_passphrase_file,
        tuf_timestamp_expiry=tuf_timestamp_expiry,
        tuf_renew=tuf_renew,
        deltas=deltas,
        tls_tickets=tls_tickets,
        tls_ticket_period=tls_ticket_period,
        tls_session_cache=tls_session_cache,
        artifact_offload=artifact_offload,
    )
    try:
        check_options(options)
    except OptionError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.hint) from None
    # The hub serves from a fresh, lean interpreter (same pid): see _hub_main.
    exec_serve(options, sys.argv[1:])
    try:  # the exec failed: serve here
        serving = serve_options(options)
    except OptionError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.hint) from None
    from fogline.hub import serve

    serve(serving)


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


app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.command("nginx-config")(nginx_config_command)
