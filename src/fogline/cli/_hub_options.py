"""`fogline hub serve`'s options as given, and the checks that need no hub code.

`fogline hub serve` builds `HubOptions` from its flags, runs `check_options`
(a wrong flag is Typer's usage error, exit 2, naming it) and execs
`fogline.cli._hub_main` with the options as JSON (`_options`), which checks
them again, then what needs the hub (`--artifact-offload`,
`--metrics-listen`, the passphrase file) and serves. Checked here, in the
order the flags were always checked: durations (`fogline._duration`), their
relations, percentages, the webhook URL, and the ranges Typer checks (for
options that did not come through Typer).

At module level this imports the standard library and fogline's base only:
the hub's process imports it after the exec, the CLI before it.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fogline._duration import parse_duration

from ._options import OptionError

# Shorter, and a node renews every few seconds (only tests want that).
MIN_DEVICE_CERT_VALIDITY_S: Final = 10.0


@dataclass(frozen=True)
class HubOptions:
    """`fogline hub serve`'s flags as given (paths as given, relative ones
    too). Never a secret: the CA key's passphrase stays in its file."""

    data_dir: Path
    db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    san: list[str] = field(default_factory=list)
    report_interval: float = 10.0
    telemetry_retention: str = "7d"
    health_raw_retention: str = "24h"
    health_rollup_step: str = "5m"
    health_rollup_retention: str = "30d"
    alert_offline_after: str = "5m"
    alert_disk_free_below: str = "10%"
    alert_memory_used_above: str = "90%"
    alert_cert_expiry: str = "30d"
    alert_crash_loop_restarts: int = 0
    alert_webhook: str | None = None
    forecast_window: str = "6h"
    forecast_min_span: str = "30m"
    forecast_horizon: str = "24h"
    forecast_interval: str = "1m"
    log_level: str = "info"
    workers: int = 1
    handshake_timeout: float = 10.0
    idle_timeout: float | None = None
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    max_connections: int = 32768
    max_connections_per_address: int = 512
    metrics_listen: str | None = None
    metrics_listen_public: bool = False
    device_cert_validity: str = "365d"
    ca_key_passphrase_file: Path | None = None
    tuf_timestamp_expiry: str = "1d"
    tuf_renew: bool = True
    deltas: bool = True
    tls_tickets: bool = True
    tls_ticket_period: str = "1h"
    tls_session_cache: int = 0
    artifact_offload: str | None = None


# The ranges Typer checks at the command line (min, max; None: no bound),
# checked again for options that came another way (the exec'd program's).
RANGES: Final[tuple[tuple[str, str, float, float | None], ...]] = (
    ("alert_crash_loop_restarts", "--alert-crash-loop-restarts", 0, 1_000_000),
    ("workers", "--workers", 1, 64),
    ("handshake_timeout", "--handshake-timeout", 0.1, 300),
    ("idle_timeout", "--idle-timeout", 0.1, 3600),
    ("header_timeout", "--header-timeout", 0.1, 600),
    ("body_timeout", "--body-timeout", 0.1, 3600),
    ("max_connections", "--max-connections", 1, None),
    ("max_connections_per_address", "--max-connections-per-address", 0, None),
    ("tls_session_cache", "--tls-session-cache", 0, 1_000_000),
)


@dataclass(frozen=True, slots=True)
class CheckedFlags:
    """The flags `check_options` parsed, in seconds and shares."""

    telemetry_retention_s: float
    device_cert_validity_s: float
    timestamp_ttl_s: float
    ticket_period_s: float
    health_raw_retention_s: float
    health_rollup_step_s: float
    health_rollup_retention_s: float
    alert_offline_after_s: float
    alert_cert_expiry_s: float
    alert_disk_free_min: float
    alert_memory_used_max: float
    forecast_window_s: float
    forecast_min_span_s: float
    forecast_horizon_s: float
    forecast_interval_s: float


def check_options(options: HubOptions) -> CheckedFlags:
    """The checks of `fogline hub serve` that need no hub code, in the order
    the flags were always checked: the first wrong one is named.

    Raises:
        OptionError: a flag is wrong (named, with the reason).
    """
    _check_ranges(options)
    one = _seconds((("--telemetry-retention", options.telemetry_retention),))
    validity = _seconds((("--device-cert-validity", options.device_cert_validity),))
    validity_s = validity["--device-cert-validity"]
    if validity_s < MIN_DEVICE_CERT_VALIDITY_S:
        raise OptionError(
            "--device-cert-validity",
            f"must be at least {MIN_DEVICE_CERT_VALIDITY_S:.0f}s "
            f"(got {options.device_cert_validity!r})",
        )
    one |= _seconds(
        (
            ("--tuf-timestamp-expiry", options.tuf_timestamp_expiry),
            ("--tls-ticket-period", options.tls_ticket_period),
        )
    )
    if not 1 <= one["--tls-ticket-period"] <= 7 * 86400:
        raise OptionError(
            "--tls-ticket-period",
            f"must be between 1s and 7d (got {options.tls_ticket_period!r})",
        )
    if options.tls_session_cache and not options.tls_tickets:
        # Without tickets there is nothing to resume: the cache would be
        # silently unused.
        raise OptionError(
            "--tls-session-cache",
            "needs TLS tickets: drop --no-tls-tickets, or the cache (0)",
        )
    health = _health(options)
    alerts = _alerts(options)
    # The forecast reads raw samples: a window past their retention is cut
    # to it (a hub keeping 1h of samples forecasts over that hour).
    forecast = _seconds(
        (
            ("--forecast-window", options.forecast_window),
            ("--forecast-min-span", options.forecast_min_span),
            ("--forecast-horizon", options.forecast_horizon),
            ("--forecast-interval", options.forecast_interval),
        ),
        at_least_1s=True,
    )
    window_s = min(forecast["--forecast-window"], health["--health-raw-retention"])
    return CheckedFlags(
        telemetry_retention_s=one["--telemetry-retention"],
        device_cert_validity_s=validity_s,
        timestamp_ttl_s=one["--tuf-timestamp-expiry"],
        ticket_period_s=one["--tls-ticket-period"],
        health_raw_retention_s=health["--health-raw-retention"],
        health_rollup_step_s=health["--health-rollup-step"],
        health_rollup_retention_s=health["--health-rollup-retention"],
        alert_offline_after_s=alerts["--alert-offline-after"],
        alert_cert_expiry_s=alerts["--alert-cert-expiry"],
        alert_disk_free_min=alerts["--alert-disk-free-below"],
        alert_memory_used_max=alerts["--alert-memory-used-above"],
        forecast_window_s=window_s,
        forecast_min_span_s=min(forecast["--forecast-min-span"], window_s),
        forecast_horizon_s=forecast["--forecast-horizon"],
        forecast_interval_s=forecast["--forecast-interval"],
    )


def _check_ranges(options: HubOptions) -> None:
    """Typer's ranges, worded as Click words them."""
    for name, hint, low, high in RANGES:
        value = getattr(options, name)
        if value is None or (low <= value and (high is None or value <= high)):
            continue
        bounds = f"{low}<=x<={high}" if high is not None else f"x>={low}"
        raise OptionError(hint, f"{value} is not in the range {bounds}.")


def _seconds(flags: Iterable[tuple[str, str]], *, at_least_1s: bool = False) -> dict[str, float]:
    """Each flag's duration in seconds, by flag; checked in order, each
    before the next is read."""
    seconds: dict[str, float] = {}
    for hint, value in flags:
        try:
            seconds[hint] = parse_duration(value)
        except ValueError as exc:
            raise OptionError(hint, str(exc)) from None
        if at_least_1s and seconds[hint] < 1:
            raise OptionError(hint, f"must be at least 1s (got {value!r})")
    return seconds


def _health(options: HubOptions) -> dict[str, float]:
    """The --health-* flags, checked together: raw samples must outlive a
    rollup step (a bucket is rolled up from them after it closes)."""
    raw, step, rollups = (
        options.health_raw_retention,
        options.health_rollup_step,
        options.health_rollup_retention,
    )
    seconds = _seconds(
        (
            ("--health-raw-retention", raw),
            ("--health-rollup-step", step),
            ("--health-rollup-retention", rollups),
        )
    )
    step_s = seconds["--health-rollup-step"]
    if step_s < 1:
        raise OptionError("--health-rollup-step", f"must be at least 1s (got {step!r})")
    if seconds["--health-raw-retention"] < 2 * step_s:
        raise OptionError(
            "--health-raw-retention",
            f"must be at least twice --health-rollup-step ({step}) (got {raw!r})",
        )
    if seconds["--health-rollup-retention"] < step_s:
        raise OptionError(
            "--health-rollup-retention",
            f"must be at least --health-rollup-step ({step}) (got {rollups!r})",
        )
    return seconds


def _alerts(options: HubOptions) -> dict[str, float]:
    """The --alert-* flags: durations and shares, by flag; the webhook checked."""
    from urllib.parse import urlsplit

    checked = _seconds(
        (
            ("--alert-offline-after", options.alert_offline_after),
            ("--alert-cert-expiry", options.alert_cert_expiry),
        )
    )
    if checked["--alert-offline-after"] < 1:
        raise OptionError(
            "--alert-offline-after", f"must be at least 1s (got {options.alert_offline_after!r})"
        )
    webhook = options.alert_webhook
    if webhook is not None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(webhook) > 2048:
            raise OptionError("--alert-webhook", f"must be an http(s) URL (got {webhook[:80]!r})")
    checked["--alert-disk-free-below"] = _share(
        options.alert_disk_free_below, "--alert-disk-free-below"
    )
    checked["--alert-memory-used-above"] = _share(
        options.alert_memory_used_above, "--alert-memory-used-above"
    )
    return checked


_PERCENT: Final = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3})?)%?")


def _share(value: str, hint: str) -> float:
    """A percentage (`10%`, `10`, `12.5%`) strictly between 0 and 100, as a share."""
    match = _PERCENT.fullmatch(value.strip())
    if match is None or not 0 < float(match.group(1)) < 100:
        raise OptionError(
            hint, f"must be a percentage between 0 and 100, e.g. 10% (got {value[:40]!r})"
        )
    return float(match.group(1)) / 100
