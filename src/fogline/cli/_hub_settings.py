"""The --health-* and --forecast-* flags of `fogline hub serve`, checked together."""

from collections.abc import Iterable
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from fogline.hub import ForecastSettings, HealthRetention


def _seconds(flags: Iterable[tuple[str, str]], *, at_least_1s: bool = False) -> dict[str, float]:
    """Each flag's duration in seconds, by flag; a bad one is a usage error
    naming its flag (checked in order, each before the next is read)."""
    from fogline._duration import parse_duration

    seconds: dict[str, float] = {}
    for hint, value in flags:
        try:
            seconds[hint] = parse_duration(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None
        if at_least_1s and seconds[hint] < 1:
            raise typer.BadParameter(f"must be at least 1s (got {value!r})", param_hint=hint)
    return seconds


def health_retention(raw: str, step: str, rollups: str) -> "HealthRetention":
    """The --health-* flags, checked together: raw samples must outlive a
    rollup step (a bucket is rolled up from them after it closes)."""
    from fogline.hub import HealthRetention

    seconds = _seconds(
        (
            ("--health-raw-retention", raw),
            ("--health-rollup-step", step),
            ("--health-rollup-retention", rollups),
        )
    )
    step_s = seconds["--health-rollup-step"]
    if step_s < 1:
        raise typer.BadParameter(
            f"must be at least 1s (got {step!r})", param_hint="--health-rollup-step"
        )
    if seconds["--health-raw-retention"] < 2 * step_s:
        raise typer.BadParameter(
            f"must be at least twice --health-rollup-step ({step}) (got {raw!r})",
            param_hint="--health-raw-retention",
        )
    if seconds["--health-rollup-retention"] < step_s:
        raise typer.BadParameter(
            f"must be at least --health-rollup-step ({step}) (got {rollups!r})",
            param_hint="--health-rollup-retention",
        )
    return HealthRetention(
        raw_retention_s=seconds["--health-raw-retention"],
        rollup_step_s=step_s,
        rollup_retention_s=seconds["--health-rollup-retention"],
    )


def forecast_settings(
    health: "HealthRetention", window: str, min_span: str, horizon: str, interval: str
) -> "ForecastSettings":
    from fogline.hub import ForecastSettings

    seconds = _seconds(
        (
            ("--forecast-window", window),
            ("--forecast-min-span", min_span),
            ("--forecast-horizon", horizon),
            ("--forecast-interval", interval),
        ),
        at_least_1s=True,
    )
    # The forecast reads raw samples: a window past their retention is cut
    # to it (a hub keeping 1h of samples forecasts over that hour).
    window_s = min(seconds["--forecast-window"], health.raw_retention_s)
    return ForecastSettings(
        window_s=window_s,
        min_span_s=min(seconds["--forecast-min-span"], window_s),
        horizon_s=seconds["--forecast-horizon"],
        interval_s=seconds["--forecast-interval"],
    )
