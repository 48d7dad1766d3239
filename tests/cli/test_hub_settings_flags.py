"""`fogline hub serve` refuses bad --health-* and --forecast-* durations, and
flags that contradict each other, before it starts, naming the flag
(cli/_hub_options.py)."""

import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ENV, fogline_cmd


@pytest.mark.parametrize(
    ("flags", "named", "reason"),
    [
        (["--health-rollup-step", "nope"], "--health-rollup-step", "got 'nope'"),
        (["--health-rollup-step", "0s"], "--health-rollup-step", "at least 1s"),
        (
            ["--health-raw-retention", "1m", "--health-rollup-step", "1m"],
            "--health-raw-retention",
            "twice --health-rollup-step",
        ),
        (["--forecast-interval", "0.5s"], "--forecast-interval", "at least 1s"),
        # Checked in order: the first bad flag is the one named.
        (["--forecast-window", "0s", "--forecast-horizon", "nope"], "--forecast-window", "1s"),
        # A session cache with no tickets to resume from would sit unused.
        (
            ["--tls-session-cache", "100", "--no-tls-tickets"],
            "--tls-session-cache",
            "needs TLS tickets",
        ),
    ],
)
def test_a_bad_duration_is_a_usage_error_naming_its_flag(
    tmp_path: Path, flags: list[str], named: str, reason: str
) -> None:
    refused = subprocess.run(
        [*fogline_cmd(), "hub", "serve", "--data-dir", str(tmp_path / "hub"), *flags],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    text = " ".join(refused.stderr.replace("│", " ").split())  # unboxed, unwrapped
    assert f"Invalid value for {named}" in text and reason in text, refused.stderr
    assert not (tmp_path / "hub" / "hub.db").exists()  # refused before anything was made
