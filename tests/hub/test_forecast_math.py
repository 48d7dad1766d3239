"""The math of fleet AIOps on seeded series (hub/_forecast.py, hub/_peers.py):
a filling disk's forecast holds the true time in its stated interval, a leak
is told from noise, an outlier from its peers, and failures are grouped by
the release they share."""

import random
from types import SimpleNamespace

from fogline.hub._alerts import AlertKind
from fogline.hub._forecast import (
    ForecastSettings,
    disk_forecast,
    fit_trend,
    leak_trend,
    memory_forecast,
)
from fogline.hub._insights import attributes, judge
from fogline.hub._peers import (
    PeerFigure,
    device_figures,
    group_failures,
    peer_anomalies,
    peer_key,
    robust_z,
)

MIB = 2**20
HOUR = 3600.0
SETTINGS = ForecastSettings()


def _series(
    seed: int, start: float, per_hour: float, noise: float, hours: float = 6, points: int = 72
) -> tuple[list[float], list[float]]:
    """A line sampled every 5 minutes with Gaussian noise and a few wild samples."""
    rng = random.Random(seed)
    times = [1_800_000_000 + i * hours * HOUR / points for i in range(points)]
    values = [start + per_hour * (t - times[0]) / HOUR + rng.gauss(0, noise) for t in times]
    for i in rng.sample(range(points), 3):  # log bursts, a cleaned tmp dir
        values[i] += rng.choice((-1, 1)) * 20 * noise
    return times, values


def test_a_filling_disk_is_forecast_full_with_the_true_time_inside_the_interval() -> None:
    # 2 GiB free, losing 200 MiB an hour: full 10.24 h after the first sample,
    # 4.24 h after the last. The interval is a 95 % one: over 100 seeded
    # series it holds the true time at least 90 times (97 as measured).
    held = 0
    for seed in range(100):
        times, free = _series(seed, 2048 * MIB, -200 * MIB, 8 * MIB)
        eta = disk_forecast(times, free, SETTINGS)
        assert eta is not None
        truth = 2048 / 200 * HOUR - (times[-1] - times[0])
        held += eta.earliest_s <= truth <= eta.latest_s
        assert abs(eta.seconds - truth) < 0.05 * truth, (seed, eta, truth)
        assert eta.words().startswith("~4 h")
    assert held >= 90


def test_a_disk_that_fills_beyond_the_horizon_or_not_at_all_raises_nothing() -> None:
    times, free = _series(1, 2048 * MIB, -20 * MIB, 4 * MIB)  # full in ~4 days
    assert disk_forecast(times, free, SETTINGS) is None
    times, free = _series(2, 2048 * MIB, 0, 8 * MIB)  # flat: noise only
    assert disk_forecast(times, free, SETTINGS) is None


def test_too_few_points_or_too_short_a_span_gives_no_trend() -> None:
    times, free = _series(3, 2048 * MIB, -200 * MIB, 8 * MIB, hours=0.25, points=10)
    assert fit_trend(times, free, SETTINGS) is None  # 10 points, 13.5 minutes


def test_a_leaking_module_is_told_from_a_noisy_steady_one() -> None:
    times, rss = _series(4, 300 * MIB, 30 * MIB, 5 * MIB)  # +10 % an hour
    trend = leak_trend(times, rss, SETTINGS)
    assert trend is not None and trend.low_slope > 0
    assert trend.low_slope <= 30 * MIB / HOUR <= trend.high_slope
    times, rss = _series(5, 300 * MIB, 0, 5 * MIB)
    assert leak_trend(times, rss, SETTINGS) is None
    # Rising beyond noise but slowly (1 % of its size an hour): not a leak.
    times, rss = _series(6, 300 * MIB, 3 * MIB, 0.2 * MIB)
    assert leak_trend(times, rss, SETTINGS) is None


def test_device_memory_filling_up_is_forecast_with_its_interval() -> None:
    times, used = _series(7, 1024 * MIB, 100 * MIB, 10 * MIB)  # of 2 GiB
    fit = memory_forecast(times, used, 2048 * MIB, SETTINGS)
    assert fit is not None
    _, eta = fit
    truth = 1024 / 100 * HOUR - (times[-1] - times[0])
    assert eta.earliest_s <= truth <= eta.latest_s


def test_judge_names_the_leaking_module_and_the_filling_disk() -> None:
    times, free = _series(8, 2048 * MIB, -200 * MIB, 8 * MIB)
    _, rss = _series(9, 300 * MIB, 40 * MIB, 5 * MIB)
    points = [
        SimpleNamespace(
            at_ms=int(t * 1000),
            disk_free_bytes=int(f),
            disk_total_bytes=4096 * MIB,
            mem_used_bytes=None,
            mem_available_bytes=None,
            modules={"web": {"rss_bytes": int(r)}, "db": {"rss_bytes": 100 * MIB}},
        )
        for t, f, r in zip(times, free, rss, strict=True)
    ]
    found = judge(points, SETTINGS)
    assert set(found) == {AlertKind.DISK_FULL_FORECAST, AlertKind.MEMORY_LEAK}
    disk = found[AlertKind.DISK_FULL_FORECAST]
    assert disk.detail.startswith("disk full in ~4 h") and disk.data is not None
    assert disk.data["earliest_s"] <= disk.data["seconds"] <= disk.data["latest_s"]
    leak = found[AlertKind.MEMORY_LEAK]
    assert leak.detail.startswith("web RSS rising") and "db" not in leak.detail
    assert leak.data is not None and set(leak.data["modules"]) == {"web"}


def test_an_outlier_is_flagged_against_its_peers_with_the_metric_and_how_far_off() -> None:
    rng = random.Random(11)
    key = peer_key(["web"], {"fogline.dev/arch": "arm64", "model": "r1"})
    figures = [PeerFigure(f"d{i}", key, "temperature_c", 45 + rng.gauss(0, 2)) for i in range(30)]
    figures.append(PeerFigure("hot", key, "temperature_c", 80.0))
    # Another hardware group runs hotter: not peers, not outliers.
    other = peer_key(["web"], {"fogline.dev/arch": "amd64", "model": "x9"})
    figures += [PeerFigure(f"x{i}", other, "temperature_c", 79 + i % 3) for i in range(10)]
    found = peer_anomalies(figures)
    assert [(a.device_id, a.metric) for a in found] == [("hot", "temperature_c")]
    assert found[0].z > 3.5 and found[0].peer_count == 31
    assert "temperature_c 80 vs median" in found[0].words()
    assert "web arch=arm64 model=r1" in found[0].words()


def test_too_few_peers_or_identical_peers_flag_nobody() -> None:
    few = [PeerFigure(f"d{i}", "k", "cpu_percent", v) for i, v in enumerate([1, 2, 90])]
    assert peer_anomalies(few) == []
    assert robust_z(5.0, [3.0, 3.0, 3.0, 3.0, 5.0]) is None  # MAD 0


def test_device_figures_read_the_reported_health() -> None:
    health = {
        "cpu_percent": 12.5,
        "mem_used_bytes": 300,
        "mem_available_bytes": 700,
        "disk_free_bytes": 25,
        "disk_total_bytes": 100,
        "modules": {"web": {"rss_bytes": 5, "restarts": 2}},
        "temperature_c": True,  # not a number: left out
    }
    got = {f.metric: f.value for f in device_figures("d", "k", health)}
    assert got == {
        "cpu_percent": 12.5,
        "memory_used_percent": 30.0,
        "disk_used_percent": 75.0,
        "rss_bytes:web": 5.0,
        "restarts:web": 2.0,
    }


def _failing(version: str, site: str, state: str = "crash-loop") -> SimpleNamespace:
    modules = {
        "web": {"version": version, "state": state},
        "db": {"version": "1.0.0", "state": "healthy"},
    }
    return SimpleNamespace(
        reported={"modules": {"modules": modules}},
        labels={"site": site},
        platform_labels={"fogline.dev/os": "linux"},
    )


def test_crash_loops_are_grouped_by_the_release_and_site_they_share() -> None:
    devices = {f"b{i}": _failing("2.1.0", "berlin") for i in range(37)}
    devices |= {f"p{i}": _failing("2.0.0", "paris") for i in range(3)}
    devices["lone"] = _failing("1.9.0", "oslo")
    groups = group_failures(
        "crash-loop", {d: attributes("crash-loop", row) for d, row in devices.items()}
    )
    assert [g.words() for g in groups] == [
        "crash-loop: 37 devices, all on web@2.1.0, site=berlin, fogline.dev/os=linux",
        "crash-loop: 3 devices, all on web@2.0.0, site=paris, fogline.dev/os=linux",
    ]
    # A crash loop is grouped on the looping module's release, not on db's.
    assert "db@1.0.0" not in groups[0].shared


def test_a_label_shared_by_every_failure_does_not_merge_two_releases() -> None:
    found = {f"a{i}": frozenset({"web@2", "os=linux"}) for i in range(4)}
    found |= {f"b{i}": frozenset({"web@3", "os=linux"}) for i in range(3)}
    groups = group_failures("offline", found)
    assert [(len(g.device_ids), g.shared) for g in groups] == [
        (4, ("web@2", "os=linux")),
        (3, ("web@3", "os=linux")),
    ]
