"""The self-healing restart decision on seeded series (hub/_restart_healing.py):
a module whose RSS trend reaches its limit within the horizon is restarted,
noise and slow growth are not; the series is the module's since it last
started; the manifest block is checked strictly."""

import random
from types import SimpleNamespace

import pytest

from fogline.hub._forecast import ForecastSettings
from fogline.hub._restart_healing import decide_restart, module_series, restart_policy
from fogline.manifest import ManifestError, ManifestSource, load_manifests

MIB = 2**20
HOUR = 3600.0
SETTINGS = ForecastSettings()
LIMIT = 512 * MIB


def _series(
    per_hour: float, *, start: float = 200 * MIB, seed: int = 1
) -> tuple[list[float], list[float]]:
    """Two hours sampled every 2 minutes, ±2 MiB noise and two wild samples."""
    rng = random.Random(seed)
    times = [1_800_000_000 + i * 120.0 for i in range(60)]
    values = [start + per_hour * (t - times[0]) / HOUR + rng.gauss(0, 2 * MIB) for t in times]
    values[10] += 80 * MIB
    values[40] -= 80 * MIB
    return times, values


def test_a_leak_that_reaches_the_limit_within_the_horizon_is_restarted() -> None:
    # 200 MiB + 100 MiB/h for 2 h: about 400 MiB now, 512 MiB in about 1 h 7 min.
    times, values = _series(100 * MIB)
    decision = decide_restart("web", times, values, LIMIT, 2 * HOUR, SETTINGS)
    assert decision is not None and decision.eta is not None
    assert 0.8 * HOUR < decision.eta.seconds < 1.5 * HOUR
    assert 90 * MIB < decision.trend.slope * HOUR < 110 * MIB
    assert "reaches its limit of 512 MiB in ~" in decision.words()
    # ...but not when the horizon is shorter than the time left.
    assert decide_restart("web", times, values, LIMIT, 0.5 * HOUR, SETTINGS) is None


def test_a_module_over_its_limit_and_still_rising_is_restarted_at_once() -> None:
    times, values = _series(100 * MIB, start=500 * MIB)
    decision = decide_restart("web", times, values, LIMIT, 60.0, SETTINGS)
    assert decision is not None and decision.eta is None
    assert "over its limit of 512 MiB" in decision.words()


@pytest.mark.parametrize("seed", range(5))
def test_noise_around_a_flat_line_is_not_a_trend(seed: int) -> None:
    times, values = _series(0.0, start=500 * MIB, seed=seed)
    assert decide_restart("web", times, values, LIMIT, 24 * HOUR, SETTINGS) is None


def test_too_few_points_say_nothing() -> None:
    times, values = _series(100 * MIB, start=500 * MIB)
    assert decide_restart("web", times[:5], values[:5], LIMIT, HOUR, SETTINGS) is None


def _point(at_s: float, rss: int | None, restarts: int = 0) -> SimpleNamespace:
    modules = {} if rss is None else {"web": {"rss_bytes": rss, "restarts": restarts}}
    return SimpleNamespace(at_ms=int(at_s * 1000), modules=modules)


def test_the_series_is_the_modules_since_it_last_started() -> None:
    points = [
        _point(1, 100),
        _point(2, 200, restarts=0),
        _point(3, 50, restarts=1),  # the supervisor restarted it: a new process
        _point(4, None),  # the module absent from a sample
        _point(5, 60, restarts=1),
        _point(6, 70, restarts=1),
    ]
    assert module_series(points, "web") == [(3.0, 50.0), (5.0, 60.0), (6.0, 70.0)]
    # After the hub's last restart request (at 5 s), only what followed.
    assert module_series(points, "web", since_ms=5000) == [(6.0, 70.0)]
    assert module_series(points, "other") == []


A, B = "a" * 64, "b" * 64
DEPLOYMENT = f"""\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{}}
  modules:
    - {{name: web, release: "sha256:{A}"}}
    - {{name: api, release: "sha256:{B}"}}
  selfHealing:
    restartOnMemoryTrend: BLOCK
"""


def test_the_policy_reads_the_block_with_its_defaults() -> None:
    text = DEPLOYMENT.replace("BLOCK", "{limit: 512MiB}")
    [deployment] = load_manifests([ManifestSource("web.yaml", text)]).deployments
    policy = restart_policy(deployment)
    assert policy is not None
    assert (policy.limit_bytes, policy.within_s, policy.cooldown_s) == (LIMIT, HOUR, HOUR)
    assert policy.modules == {"web", "api"}  # absent: the deployment's own modules
    text = DEPLOYMENT.replace("BLOCK", "{limit: 1GB, within: 30m, cooldown: 2h, modules: [web]}")
    [deployment] = load_manifests([ManifestSource("web.yaml", text)]).deployments
    policy = restart_policy(deployment)
    assert policy is not None and policy.limit_bytes == 10**9 and policy.modules == {"web"}
    assert (policy.within_s, policy.cooldown_s) == (1800.0, 7200.0)


@pytest.mark.parametrize(
    ("block", "field", "reason"),
    [
        ("{limit: 512}", "limit", "must be a string"),
        ("{limit: lots}", "limit", "a size with a unit"),
        ("{limit: 10kB}", "limit", "between 1MiB and 1TiB"),
        ("{limit: 512MiB, cooldown: 5s}", "cooldown", "between 1m and 30d"),
        ("{limit: 512MiB, within: forever}", "within", "within"),
        ("{limit: 512MiB, modules: []}", "modules", "at least 1"),
        ("{limit: 512MiB, modules: ['../x']}", "modules", "pattern"),
        ("{within: 1h}", "limit", "required"),
        ("{limit: 512MiB, restartAll: true}", "restartAll", "unknown field"),
    ],
)
def test_a_bad_restart_block_is_refused_naming_the_field(
    block: str, field: str, reason: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests([ManifestSource("web.yaml", DEPLOYMENT.replace("BLOCK", block))])
    message = str(caught.value)
    assert "spec.selfHealing.restartOnMemoryTrend" in message and field in message, message
    assert reason in message, message
