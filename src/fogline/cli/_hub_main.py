"""The hub's process: what `fogline hub serve` becomes once its options are parsed.

A hub's worker processes are forked from the process that serves, and keep
everything it imported: in `fogline hub serve` that was Typer, Rich and the
CLI's own modules, about 4-5 MB resident in each worker that never uses
them (BENCHMARKS.md, "The idle hub: what each process holds"). So, as
`fogline agent run` does (`_agent_main`), `fogline hub serve` parses its
options with Typer and checks what needs no hub code (`check_options`: a
wrong flag is Typer's usage error), then replaces itself (`exec`, same pid)
with `python -P -m fogline.cli._hub_main hub serve ...` (the command as
given follows, for `ps`), which imports the hub once, checks the rest
(`serve_options`: the offload URL, the metrics address, the passphrase
file) and serves. The command line never imports the hub, so a hub starts
no slower than when it served in the CLI's own process.

The options travel in FOGLINE_HUB_OPTIONS (JSON, bounded, no secret: the CA
key's passphrase stays in the file the operator named, read here; the
environment and the command line of every hub process are readable by its
user and by root). The program removes the variable from its environment.
A refusal is worded as Click words a usage error (exit 2, naming the flag);
a FoglineError is one line, exit 1, as the CLI prints it. Signals: SIGTERM
and SIGINT are blocked across the exec and unblocked once the options are
checked, before the hub forks anything (a child inherits the mask): one
that came during the start stops the hub then, as it would have before.

At module level this imports the standard library and fogline's base only
(`fogline.cli._hub` imports it before the exec).
"""

import logging
import sys
from typing import TYPE_CHECKING, Final

from fogline._errors import FoglineError
from fogline._reexec import unblock_stop_signals
from fogline._text import visible
from fogline.cli import skip_httpx_cli

from ._hub_options import HubOptions, check_options
from ._options import (
    ExecOptionsError,
    OptionError,
    exec_with_options,
    options_from_env,
    usage_error,
)

if TYPE_CHECKING:
    from pathlib import Path

    from fogline.hub import ServeOptions
    from fogline.hub.releases import ArtifactOffload

log = logging.getLogger("fogline.hub")

OPTIONS_ENV: Final = "FOGLINE_HUB_OPTIONS"
COMMAND: Final = "fogline hub serve"


def serve_options(options: HubOptions) -> "ServeOptions":
    """The hub's options from the flags, each checked: `check_options`, then
    what needs the hub's code, in the order the flags were always checked.

    Raises:
        OptionError: a flag is wrong (named by its flag).
        FoglineError: the offload secret or the passphrase file is unusable
            (one line: the CLI's error, exit 1).
    """
    from fogline.hub import (
        AlertThresholds,
        ConnectionLimits,
        ForecastSettings,
        HealthRetention,
        HubSettings,
        ServeOptions,
        TufSettings,
        parse_metrics_listen,
    )
    from fogline.hub.releases import DeltaSettings
    from fogline.security import read_token_file

    checked = check_options(options)
    # A pass every three report intervals (at least 1 s, at most a minute):
    # a pass reads every device's last report.
    alert_interval_s = min(max(options.report_interval * 3, 1.0), 60.0)
    settings = HubSettings(
        alerts=AlertThresholds(
            offline_after_s=checked.alert_offline_after_s,
            crash_loop_restarts=options.alert_crash_loop_restarts,
            disk_free_min=checked.alert_disk_free_min,
            memory_used_max=checked.alert_memory_used_max,
            cert_expiry_s=checked.alert_cert_expiry_s,
            interval_s=alert_interval_s,
            outbox_quiet_s=2 * alert_interval_s,
            webhook_url=options.alert_webhook,
        ),
        forecast=ForecastSettings(
            window_s=checked.forecast_window_s,
            min_span_s=checked.forecast_min_span_s,
            horizon_s=checked.forecast_horizon_s,
            interval_s=checked.forecast_interval_s,
        ),
        health=HealthRetention(
            raw_retention_s=checked.health_raw_retention_s,
            rollup_step_s=checked.health_rollup_step_s,
            rollup_retention_s=checked.health_rollup_retention_s,
        ),
        device_cert_validity_s=checked.device_cert_validity_s,
        report_interval_s=options.report_interval,
        offline_after_s=options.report_interval * 3.5,
        telemetry_retention_s=checked.telemetry_retention_s,
        tuf=TufSettings(
            timestamp_ttl_s=checked.timestamp_ttl_s,
            snapshot_ttl_s=max(7 * 86400.0, checked.timestamp_ttl_s),
            renew=options.tuf_renew,
        ),
        deltas=DeltaSettings(enabled=options.deltas),
        offload=offload_settings(options.data_dir, options.artifact_offload),
    )
    metrics_address = None
    if options.metrics_listen is not None:
        try:
            metrics_address = parse_metrics_listen(
                options.metrics_listen, allow_public=options.metrics_listen_public
            )
        except ValueError as exc:
            raise OptionError("--metrics-listen", str(exc)) from None
    limits = ConnectionLimits(
        handshake_timeout_s=options.handshake_timeout,
        # Devices keep their mTLS connection between reports: closing it sooner
        # than they report makes every report pay a new TLS handshake.
        idle_timeout_s=options.idle_timeout or max(30.0, options.report_interval * 3),
        header_timeout_s=options.header_timeout,
        body_timeout_s=options.body_timeout,
        max_per_address=options.max_connections_per_address,
        max_total=options.max_connections,
    )
    passphrase_file = options.ca_key_passphrase_file
    # Read here, in the hub's own process: the passphrase never travels.
    passphrase = read_token_file(passphrase_file).encode() if passphrase_file else None
    return ServeOptions(
        options.data_dir,
        options.db,
        options.host,
        options.port,
        list(options.san),
        settings,
        options.log_level,
        options.workers,
        limits=limits,
        metrics_listen=metrics_address,
        ca_key_passphrase=passphrase,
        tls_tickets=options.tls_tickets,
        ticket_period_s=checked.ticket_period_s,
        tls_session_cache=options.tls_session_cache,
    )


def offload_settings(data_dir: "Path", url: str | None) -> "ArtifactOffload | None":
    """The --artifact-offload flag, checked, with its secret (made if missing).

    Raises:
        OptionError: the URL is not https://HOST[:PORT].
        OffloadConfigError: the secret file is readable by others, or not a secret.
    """
    if url is None:
        return None
    from fogline.hub.releases import ArtifactOffload, OffloadConfigError, check_offload_url

    try:
        base_url = check_offload_url(url)
    except OffloadConfigError as exc:
        raise OptionError("--artifact-offload", str(exc)) from None
    return ArtifactOffload(base_url, offload_secret_made(data_dir))


def offload_secret_made(data_dir: "Path") -> str:
    """DATA_DIR/artifact-offload-secret, made if missing (and DATA_DIR 0700).

    Raises:
        OffloadConfigError: a secret file others can read, or not a secret.
    """
    from fogline.hub.releases import offload_secret

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return offload_secret(data_dir)


def exec_serve(options: HubOptions, shown: list[str]) -> None:
    """Replace this process by `python -P -m fogline.cli._hub_main` serving
    with `options`; returns only if that could not be done (then serve in
    process). `shown` follows the module's name on the new command line,
    for `ps` (the command as given: never a secret, see the module's doc).
    """
    module = __spec__.name if __spec__ else __name__
    exec_with_options(module, shown, OPTIONS_ENV, options, log)


def main() -> int:
    """`python -P -m fogline.cli._hub_main ...`, run by `exec_serve` only."""
    skip_httpx_cli()  # before anything imports httpx
    try:
        options = options_from_env(HubOptions, OPTIONS_ENV, f"the hub with `{COMMAND}`")
    except ExecOptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        serving = serve_options(options)
    except OptionError as exc:  # left to this program, or changed since the CLI checked
        print(usage_error(COMMAND, exc), file=sys.stderr)
        return 2
    except FoglineError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return 1
    unblock_stop_signals()  # blocked across the exec; before the hub forks
    from fogline.hub import serve

    try:
        serve(serving)
    except FoglineError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
