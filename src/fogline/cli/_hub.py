"""`fogline hub ...`: run the cloud tier."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fogline._log import LOG_FORMAT_ENV

from ._backup import backup_command, restore_command
from ._ca import CaPassphraseOpt, read_passphrase
from ._common import LogFormatOpt
from ._hub_offload import ArtifactOffloadOpt, nginx_config_command, offload_settings
from ._hub_settings import forecast_settings, health_retention

if TYPE_CHECKING:
    from fogline.hub import AlertThresholds

# Shorter, and a node renews every few seconds (only tests want that).
MIN_DEVICE_CERT_VALIDITY_S = 10.0

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
    # Imported here: operator commands should not pay for the hub's imports.
    from fogline.hub import (
        ConnectionLimits,
        HubSettings,
        ServeOptions,
        TufSettings,
        parse_metrics_listen,
        serve,
    )
    from fogline.hub.releases import DeltaSettings
    from fogline.manifest import parse_duration

    try:
        retention_s = parse_duration(telemetry_retention)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--telemetry-retention") from None
    try:
        validity_s = parse_duration(device_cert_validity)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device-cert-validity") from None
    if validity_s < MIN_DEVICE_CERT_VALIDITY_S:
        raise typer.BadParameter(
            f"must be at least {MIN_DEVICE_CERT_VALIDITY_S:.0f}s (got {device_cert_validity!r})",
            param_hint="--device-cert-validity",
        )
    try:
        timestamp_ttl_s = parse_duration(tuf_timestamp_expiry)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tuf-timestamp-expiry") from None
    try:
        ticket_period_s = parse_duration(tls_ticket_period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tls-ticket-period") from None
    if not 1 <= ticket_period_s <= 7 * 86400:
        raise typer.BadParameter(
            f"must be between 1s and 7d (got {tls_ticket_period!r})",
            param_hint="--tls-ticket-period",
        )
    health = health_retention(health_raw_retention, health_rollup_step, health_rollup_retention)
    alerts = _alert_thresholds(
        AlertFlags(
            offline_after=alert_offline_after,
            disk_free_below=alert_disk_free_below,
            memory_used_above=alert_memory_used_above,
            cert_expiry=alert_cert_expiry,
            crash_loop_restarts=alert_crash_loop_restarts,
            webhook=alert_webhook,
        ),
        report_interval,
    )
    forecast = forecast_settings(
        health, forecast_window, forecast_min_span, forecast_horizon, forecast_interval
    )
    settings = HubSettings(
        alerts=alerts,
        forecast=forecast,
        health=health,
        device_cert_validity_s=validity_s,
        report_interval_s=report_interval,
        offline_after_s=report_interval * 3.5,
        telemetry_retention_s=retention_s,
        tuf=TufSettings(
            timestamp_ttl_s=timestamp_ttl_s,
            snapshot_ttl_s=max(7 * 86400.0, timestamp_ttl_s),
            renew=tuf_renew,
        ),
        deltas=DeltaSettings(enabled=deltas),
        offload=offload_settings(data_dir, artifact_offload),
    )
    metrics_address = None
    if metrics_listen is not None:
        try:
            metrics_address = parse_metrics_listen(
                metrics_listen, allow_public=metrics_listen_public
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--metrics-listen") from None
    limits = ConnectionLimits(
        handshake_timeout_s=handshake_timeout,
        # Devices keep their mTLS connection between reports: closing it sooner
        # than they report makes every report pay a new TLS handshake.
        idle_timeout_s=idle_timeout or max(30.0, report_interval * 3),
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        max_per_address=max_connections_per_address,
        max_total=max_connections,
    )
    serve(
        ServeOptions(
            data_dir,
            db,
            host,
            port,
            san or [],
            settings,
            log_level,
            workers,
            limits=limits,
            metrics_listen=metrics_address,
            ca_key_passphrase=read_passphrase(ca_key_passphrase_file),
            tls_tickets=tls_tickets,
            ticket_period_s=ticket_period_s,
            tls_session_cache=tls_session_cache,
        )
    )


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


@dataclass(frozen=True, slots=True)
class AlertFlags:
    """The --alert-* flags as given, checked together by `_alert_thresholds`."""

    offline_after: str
    disk_free_below: str
    memory_used_above: str
    cert_expiry: str
    crash_loop_restarts: int
    webhook: str | None


_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3})?)%?")


def _share(value: str, hint: str) -> float:
    """A percentage (`10%`, `10`, `12.5%`) strictly between 0 and 100, as a share."""
    match = _PERCENT.fullmatch(value.strip())
    if match is None or not 0 < float(match.group(1)) < 100:
        raise typer.BadParameter(
            f"must be a percentage between 0 and 100, e.g. 10% (got {value[:40]!r})",
            param_hint=hint,
        )
    return float(match.group(1)) / 100


def _alert_thresholds(flags: AlertFlags, report_interval_s: float) -> "AlertThresholds":
    """The --alert-* flags, checked: a wrong one stops the hub before it
    starts, naming the flag."""
    from urllib.parse import urlsplit

    from fogline._duration import parse_duration
    from fogline.hub import AlertThresholds

    durations: dict[str, float] = {}
    for hint, value in (
        ("--alert-offline-after", flags.offline_after),
        ("--alert-cert-expiry", flags.cert_expiry),
    ):
        try:
            durations[hint] = parse_duration(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
    if durations["--alert-offline-after"] < 1:
        raise typer.BadParameter(
            f"must be at least 1s (got {flags.offline_after!r})",
            param_hint="--alert-offline-after",
        )
    webhook = flags.webhook
    if webhook is not None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(webhook) > 2048:
            raise typer.BadParameter(
                f"must be an http(s) URL (got {webhook[:80]!r})", param_hint="--alert-webhook"
            )
    # A pass every three report intervals (at least 1 s, at most a minute):
    # a pass reads every device's last report.
    interval_s = min(max(report_interval_s * 3, 1.0), 60.0)
    return AlertThresholds(
        offline_after_s=durations["--alert-offline-after"],
        crash_loop_restarts=flags.crash_loop_restarts,
        disk_free_min=_share(flags.disk_free_below, "--alert-disk-free-below"),
        memory_used_max=_share(flags.memory_used_above, "--alert-memory-used-above"),
        cert_expiry_s=durations["--alert-cert-expiry"],
        interval_s=interval_s,
        outbox_quiet_s=2 * interval_s,
        webhook_url=webhook,
    )
