"""Canary analysis without a hub: the `spec.rollout.analysis` schema, the
per-device statistics, the verdicts on seeded cohorts, the canary order."""

import random
from collections import Counter

import pytest

from fogline.hub._validators import default_validators
from fogline.hub.rollouts._analysis import (
    Sample,
    analyse,
    device_statistic,
    judge_metric,
)
from fogline.hub.rollouts._analysis_spec import (
    AnalysisSpec,
    Statistic,
    parse_analysis,
)
from fogline.hub.rollouts._canaries import canary_order
from fogline.hub.rollouts._policy import RolloutPolicy, parse_rollout_policy, wave_bounds
from fogline.manifest import BlockError, ManifestError, ManifestSource, load_manifests

MB = 1_000_000
BLOCK = {
    "metrics": [
        {"metric": "module-rss-growth", "module": "web", "tolerance": "10MB/h"},
        {"metric": "module-cpu", "module": "web", "tolerance": "25%"},
        {"metric": "module-restarts", "tolerance": "0.5/h"},
    ],
    "minSamples": 5,
}
SPEC = parse_analysis(BLOCK)


def test_analysis_block_parses_units_defaults_and_round_trips_in_the_policy():
    assert [m.label for m in SPEC.metrics] == [
        "module-rss-growth(web)",
        "module-cpu(web)",
        "module-restarts",
    ]
    assert SPEC.metrics[0].tolerance.absolute == 10 * MB
    assert SPEC.metrics[1].tolerance.relative == 0.25
    assert SPEC.metrics[2].tolerance.absolute == 0.5
    assert (SPEC.inconclusive, SPEC.confidence) == ("pause", 0.99)
    mem = parse_analysis({"metrics": [{"metric": "device-memory", "tolerance": "64MiB"}]})
    assert mem.metrics[0].tolerance.absolute == 64 * 1024**2
    policy = parse_rollout_policy({"waves": ["10%", "100%"], "analysis": BLOCK})
    assert policy.analysis is not None
    assert RolloutPolicy.from_json(policy.to_json()) == policy
    assert "analysis module-rss-growth(web),module-cpu(web),module-restarts" in policy.summary()


@pytest.mark.parametrize(
    ("block", "path", "words"),
    [
        ({"metrics": []}, ("analysis", "metrics"), "non-empty"),
        (
            {"metrics": [{"metric": "rss", "tolerance": 1}]},
            ("analysis", "metrics", 0, "metric"),
            "unknown metric",
        ),
        ({"metrics": [{"metric": "device-cpu"}]}, ("analysis", "metrics", 0), "needs a tolerance"),
        (
            {"metrics": [{"metric": "device-cpu", "module": "web", "tolerance": 5}]},
            ("analysis", "metrics", 0, "module"),
            "device metric",
        ),
        (
            {"metrics": [{"metric": "module-rss", "tolerance": "lots"}]},
            ("analysis", "metrics", 0, "tolerance"),
            "a size like 64MB",
        ),
        (
            {"metrics": [{"metric": "module-rss", "tolerance": "5MB/h"}]},
            ("analysis", "metrics", 0, "tolerance"),
            "a size like 64MB",
        ),
        (
            {"metrics": [{"metric": "module-cpu", "direction": "up", "tolerance": 5}]},
            ("analysis", "metrics", 0, "direction"),
            "increase or decrease",
        ),
        (
            {"metrics": [{"metric": "crash-loops", "tolerance": 2}]},
            ("analysis", "metrics", 0, "tolerance"),
            "at most 1",
        ),
        (
            {"metrics": [{"metric": "device-cpu", "tolerance": 5}], "inconclusive": "maybe"},
            ("analysis", "inconclusive"),
            "pass, fail or pause",
        ),
        (
            {"metrics": [{"metric": "device-cpu", "tolerance": 5}], "minSamples": 1},
            ("analysis", "minSamples"),
            "2 to 10000",
        ),
        (
            {"metrics": [{"metric": "device-cpu", "tolerance": 5}], "confidence": "100%"},
            ("analysis", "confidence"),
            "below 100%",
        ),
        (
            {"metrics": [{"metric": "device-cpu", "tolerance": 5}] * 2},
            ("analysis", "metrics", 1),
            "given twice",
        ),
        (
            {"metrics": [{"metric": "device-cpu", "tolerance": 5}], "alpha": 1},
            ("analysis", "alpha"),
            "unknown key",
        ),
    ],
)
def test_bad_analysis_blocks_are_refused_at_their_path(block, path, words):
    with pytest.raises(BlockError) as caught:
        parse_rollout_policy({"analysis": block})
    assert tuple(caught.value.path) == path
    assert words in caught.value.reason


def test_a_bad_analysis_in_a_manifest_names_file_line_and_column():
    text = (
        "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  selector: {}\n  rollout:\n    waves: [10%, 100%]\n    analysis:\n      metrics:\n"
        "        - metric: module-rss-growth\n          tolerance: 10 apples\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([ManifestSource("fleet.yaml", text)], validators=default_validators())
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("fleet.yaml:12:22: spec.rollout.analysis.metrics[0].tolerance: ")
    assert "a growth like 10MB/h" in problem


def test_device_statistics_median_slope_rate_and_share():
    points = [(60.0 * i, 100.0 + 10.0 * i) for i in range(11)]  # +10 per minute
    assert device_statistic(Statistic.SLOPE, points) == pytest.approx(600.0)
    assert device_statistic(Statistic.MEDIAN, points) == 150.0
    # A counter reset (a restart of the agent, a new version) counts from zero.
    counter = [(0.0, 3.0), (1800.0, 4.0), (2700.0, 1.0), (3600.0, 2.0)]
    assert device_statistic(Statistic.RATE, counter) == pytest.approx(3.0)
    assert device_statistic(Statistic.SHARE, [(0, 0.0), (1, 1.0), (2, 1.0), (3, 0.0)]) == 0.5
    assert device_statistic(Statistic.MEDIAN, points[:2]) is None  # too few points


def _cohort(
    rand: random.Random, devices: int, *, leak_mb_h: float = 0.0, cpu_factor: float = 1.0
) -> dict[str, list[Sample]]:
    """Devices reporting every 10 s for 10 minutes: RSS around a per-device
    base with noise, plus a leak; CPU around a per-device level."""
    cohort = {}
    for d in range(devices):
        base, cpu = rand.uniform(40, 80) * MB, rand.uniform(4, 8)
        series = []
        for i in range(61):
            t = 10.0 * i
            rss = base + leak_mb_h * MB * t / 3600 + rand.gauss(0, 0.5 * MB)
            web = {
                "state": "healthy",
                "restarts": 0,
                "rss_bytes": int(rss),
                "cpu_percent": max(0.0, cpu * cpu_factor + rand.gauss(0, 1)),
            }
            series.append(Sample(at_s=t, modules={"web": web}))
        cohort[f"d{d}"] = series
    return cohort


def test_a_leaking_release_fails_on_the_leak_metric_and_names_it():
    rand = random.Random(7)
    result = analyse(SPEC, _cohort(rand, 10, leak_mb_h=30), _cohort(rand, 100))
    assert result.outcome == "fail"
    leak = result.metrics[0]
    assert (leak.metric, leak.outcome) == ("module-rss-growth(web)", "fail")
    assert leak.canary_median == pytest.approx(30 * MB, rel=0.2)
    assert abs(leak.control_median or 0) < 3 * MB
    assert leak.p_value is not None and leak.p_value < 1e-6
    assert leak.effect_size == 1.0
    assert (leak.canaries, leak.controls) == (10, 100)
    assert [m.outcome for m in result.metrics[1:]] == ["pass", "pass"]
    assert result.reason.startswith("canary analysis fail: module-rss-growth(web): increase")


def test_a_cpu_hungry_release_fails_on_cpu_and_a_good_one_passes():
    rand = random.Random(11)
    hungry = analyse(SPEC, _cohort(rand, 10, cpu_factor=1.6), _cohort(rand, 100))
    assert [m.outcome for m in hungry.metrics] == ["pass", "fail", "pass"]
    good = analyse(SPEC, _cohort(rand, 10), _cohort(rand, 100))
    assert good.outcome == "pass" and good.reason == ""


def test_too_few_devices_or_a_noisy_difference_is_inconclusive():
    rand = random.Random(3)
    few = analyse(SPEC, _cohort(rand, 3, leak_mb_h=30), _cohort(rand, 100))
    assert few.outcome == "inconclusive"
    assert "minSamples is 5" in few.metrics[0].reason
    # Past the tolerance, but the cohorts overlap too much to say so at 99 %.
    leak = SPEC.metrics[0]
    verdict = judge_metric(
        leak,
        [12e6, 30e6, -20e6, 40e6, 25e6],
        [0, 5e6, -5e6, 45e6, 10e6, 20e6],
        min_samples=5,
        confidence=0.99,
    )
    assert verdict.outcome == "inconclusive"
    assert "not significant" in verdict.reason


def test_decrease_is_bad_compares_the_other_way():
    spec = AnalysisSpec.from_json(
        parse_analysis(
            {"metrics": [{"metric": "device-cpu", "direction": "decrease", "tolerance": "10%"}]}
        ).to_json()
    )
    metric = spec.metrics[0]
    lower = judge_metric(
        metric, [10.0] * 8, [20.0 + i for i in range(20)], min_samples=5, confidence=0.99
    )
    higher = judge_metric(
        metric, [40.0] * 8, [20.0 + i for i in range(20)], min_samples=5, confidence=0.99
    )
    assert (lower.outcome, higher.outcome) == ("fail", "pass")


def test_canaries_touch_every_stratum_first_and_then_follow_the_strata_sizes():
    sites = ["berlin"] * 600 + ["paris"] * 300 + [f"small-{i}" for i in range(10)]
    labels = [{"site": site} for site in sites]
    order, strata = canary_order(labels, ["site"], seed=42)
    assert strata == 12 and sorted(order) == list(range(len(sites)))
    assert {sites[i] for i in order[:12]} == set(sites)  # one per site first
    half = Counter(sites[i] for i in order[: len(sites) // 2])
    assert 280 <= half["berlin"] <= 320 and 130 <= half["paris"] <= 170
    assert canary_order(labels, ["site"], seed=42) == (order, strata)  # reproducible
    assert canary_order(labels, ["site"], seed=43)[0] != order
    # A 1 % wave of 910 devices is 10; raised to 12 so that every site has one.
    policy = parse_rollout_policy({"waves": ["1%", "100%"]})
    assert wave_bounds(policy, len(sites), min_first=strata) == [12, 910]


def test_outbox_drops_are_kept_with_each_sample_and_judged_as_a_rate():
    from fogline.hub._health import health_row
    from fogline.protocol import NodeHealth, OutboxReport

    outbox = OutboxReport(depth=1, bytes=10, max_bytes=100, dropped_quota=3, expired=2)
    assert health_row("dev", NodeHealth(), 0, outbox)["outbox_dropped"] == 5
    assert health_row("dev", NodeHealth(), 0)["outbox_dropped"] is None
    spec = parse_analysis({"metrics": [{"metric": "outbox-drops", "tolerance": "10/h"}]})

    def device(per_hour: float) -> list[Sample]:
        return [Sample(at_s=60.0 * i, outbox_dropped=per_hour * i / 60) for i in range(11)]

    dropping = {f"c{i}": device(600.0) for i in range(6)}
    steady = {f"k{i}": device(0.0) for i in range(20)}
    result = analyse(spec, dropping, steady)
    [verdict] = result.metrics
    assert (verdict.outcome, verdict.canary_median, verdict.control_median) == ("fail", 600.0, 0.0)


@pytest.mark.parametrize(
    ("metric", "field"),
    [("pipeline-errors", "pipeline_errors"), ("pipeline-drops", "pipeline_dropped")],
)
def test_pipeline_errors_and_drops_are_stored_with_each_sample_and_judged_as_rates(metric, field):
    from fogline.hub._health import SERIES_COLUMNS, health_row
    from fogline.protocol import NodeHealth

    row = health_row("dev", NodeHealth(pipeline_errors=4, pipeline_dropped=9), 0)
    assert (row["pipeline_errors"], row["pipeline_dropped"]) == (4, 9)
    assert field in SERIES_COLUMNS  # rolled up (their most) and shown in the series
    spec = parse_analysis({"metrics": [{"metric": metric, "tolerance": "10/h"}]})

    def device(per_hour: float) -> list[Sample]:
        return [Sample(at_s=60.0 * i, **{field: per_hour * i / 60}) for i in range(11)]

    failing = analyse(
        spec, {f"c{i}": device(300.0) for i in range(6)}, {f"k{i}": device(1.0) for i in range(20)}
    )
    [verdict] = failing.metrics
    assert (verdict.metric, verdict.outcome) == (metric, "fail")
    assert verdict.canary_median == pytest.approx(300.0)
    assert f"canary analysis fail: {metric}: increase beyond tolerance" in failing.reason
    good = analyse(
        spec, {f"c{i}": device(1.0) for i in range(6)}, {f"k{i}": device(1.0) for i in range(20)}
    )
    assert good.outcome == "pass"


def test_a_module_series_is_named_module_name_series_counters_as_rates_gauges_as_levels():
    spec = parse_rollout_policy(
        {
            "analysis": {
                "metrics": [
                    {"metric": "module:web:http_errors_total", "tolerance": "30/h"},
                    {"metric": "module:web:queue_depth", "tolerance": 5, "direction": "increase"},
                ]
            }
        }
    ).analysis
    assert spec is not None
    errors, depth = spec.metrics
    assert (errors.label, errors.kind.statistic, errors.tolerance.absolute) == (
        "module:web:http_errors_total",
        Statistic.RATE,
        30.0,
    )
    assert (depth.kind.statistic, depth.tolerance.absolute) == (Statistic.MEDIAN, 5.0)
    # Stored with the policy and read back by a hub that knows the form.
    assert AnalysisSpec.from_json(spec.to_json()) == spec

    def device(errors_per_hour: float, depth_level: float) -> list[Sample]:
        return [
            Sample(
                at_s=60.0 * i,
                modules={
                    "web": {
                        "state": "healthy",
                        "metrics": {
                            "http_errors_total": errors_per_hour * i / 60,
                            "queue_depth": depth_level,
                        },
                    },
                    "other": {"state": "healthy", "metrics": {"http_errors_total": 1e9}},
                },
            )
            for i in range(11)
        ]

    result = analyse(
        spec,
        {f"c{i}": device(600.0, 3.0) for i in range(6)},
        {f"k{i}": device(6.0, 3.0) for i in range(20)},
    )
    assert [m.outcome for m in result.metrics] == ["fail", "pass"]
    assert result.metrics[0].canary_median == pytest.approx(600.0)
    assert result.metrics[0].to_json()["canary_median_text"] == "600.00/h"
    assert result.metrics[1].to_json()["canary_median_text"] == "3"
    # A canary without the series (an old release, a failed scrape) has no data.
    bare = {f"c{i}": [Sample(at_s=60.0 * j) for j in range(11)] for i in range(6)}
    assert analyse(spec, bare, {f"k{i}": device(6.0, 3.0) for i in range(20)}).outcome == (
        "inconclusive"
    )


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ({"metric": "pipeline-errs", "tolerance": 5}, "metric", "module:NAME:SERIES"),
        ({"metric": "module:Web:x_total", "tolerance": 5}, "metric", "NAME must be a module name"),
        ({"metric": "module:web:http-errors", "tolerance": 5}, "metric", "Prometheus sample name"),
        ({"metric": "module:web:", "tolerance": 5}, "metric", "Prometheus sample name"),
        (
            {"metric": "module:web:x_total", "module": "web", "tolerance": 5},
            "module",
            "names its module already",
        ),
        ({"metric": "module:web:x_total", "tolerance": "5MB"}, "tolerance", "a rate like 1/h"),
        ({"metric": "module:web:depth", "tolerance": "lots"}, "tolerance", "in the series' unit"),
        ({"metric": "pipeline-drops", "module": "web", "tolerance": 5}, "module", "device metric"),
    ],
)
def test_bad_pipeline_and_module_series_metrics_are_refused_at_their_path(entry, key, words):
    with pytest.raises(BlockError) as caught:
        parse_rollout_policy({"analysis": {"metrics": [entry]}})
    assert tuple(caught.value.path) == ("analysis", "metrics", 0, key)
    assert words in caught.value.reason


def test_an_unknown_module_series_form_in_a_manifest_names_file_and_line():
    text = (
        "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  selector: {}\n  rollout:\n    waves: [10%, 100%]\n    analysis:\n      metrics:\n"
        "        - {metric: pipeline-errors, tolerance: 5/h}\n"
        "        - metric: 'module:web:http errors'\n          tolerance: 5/h\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests([ManifestSource("fleet.yaml", text)], validators=default_validators())
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("fleet.yaml:12:"), problem
    assert "spec.rollout.analysis.metrics[1].metric" in problem
