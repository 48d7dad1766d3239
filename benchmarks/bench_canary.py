"""Canary analysis: how often wave 1 catches a leaking release, and how often
it stops a good one.

Each trial is one wave 1 of a rollout to `--devices` devices: the canaries
(`--wave` of them, at least one) run the new release, the control cohort
(the rest, sampled down to the hub's cap, `MAX_COHORT`) the old one. Every
device's health comes from the virtual fleet's health source
(`fogline.sim._health.SimHealth`, the one `fogline rollout rehearse` nodes
report through the agent's Reporter) with the release's metric fault, sampled
every `--interval` seconds over the `--bake`, on a simulated clock. The
samples go through the hub's analysis (`fogline.hub.rollouts._analysis.analyse`,
what the rollout gate runs on the stored series) with the policy below.
A trial **catches** the leak when the wave fails on `module-rss-growth(web)`;
a trial of a good release (leak 0) is a **false alarm** when the wave fails
on any metric.

What it leaves out: the hub's storage and the network (the series are
built in memory, with the timing the hub would stamp), and devices that
report late or not at all.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_canary \
        --devices 1000 --trials 200 --leaks 0,5,10,20,30
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections import Counter

from fogline.hub.rollouts._analysis import Sample, analyse
from fogline.hub.rollouts._analysis_spec import parse_analysis
from fogline.hub.rollouts._canary_gate import MAX_COHORT
from fogline.protocol import ModuleReport, ModulesReport
from fogline.sim import parse_faults
from fogline.sim._health import SimHealth

from ._common import git_revision, machine, table

MB = 1_000_000
POLICY = {
    "metrics": [
        {"metric": "module-rss-growth", "module": "web", "tolerance": "10MB/h"},
        {"metric": "module-cpu", "module": "web", "tolerance": "25%"},
        {"metric": "module-restarts", "module": "web", "tolerance": "1/h"},
    ],
    "minSamples": 5,
    "confidence": "99%",
    "inconclusive": "pause",
}


def _series(
    health: SimHealth, clock: list[float], version: str, bake_s: float, interval_s: float
) -> list[Sample]:
    modules = ModulesReport(modules={"web": ModuleReport(version=version, state="healthy")})
    samples = []
    for step in range(int(bake_s // interval_s) + 1):
        clock[0] = step * interval_s
        # The figures `SimHealth.sample` puts in the report, without the wire
        # model's validation (a third of a trial's time otherwise).
        cpu, mem_used, found = health.figures(modules)
        samples.append(
            Sample(at_s=clock[0], cpu_percent=cpu, mem_used_bytes=mem_used, modules=found)
        )
    return samples


def trial(
    leak_mb_h: float,
    *,
    devices: int,
    wave: float,
    bake_s: float,
    interval_s: float,
    seed: int,
    control_cap: int = MAX_COHORT,
) -> tuple[str, dict[str, str]]:
    """One wave 1: (the wave's outcome, each metric's outcome)."""
    faults = parse_faults(f"mem-leak:web@2.0.0={leak_mb_h}MB/h" if leak_mb_h else "")
    canaries = max(1, math.ceil(devices * wave - 1e-9))
    controls = min(devices - canaries, control_cap)
    cohorts: list[dict[str, list[Sample]]] = [{}, {}]
    for index in range(canaries + controls):
        clock = [0.0]
        health = SimHealth(faults, random.Random(f"{seed}:{index}"), clock=lambda c=clock: c[0])
        version = "2.0.0" if index < canaries else "1.0.0"
        cohorts[index >= canaries][f"d{index}"] = _series(
            health, clock, version, bake_s, interval_s
        )
    result = analyse(parse_analysis(POLICY), cohorts[0], cohorts[1])
    return result.outcome, {m.metric: m.outcome for m in result.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--wave", type=float, default=0.01, help="wave 1's share (0.01: 1 %%)")
    parser.add_argument("--bake", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=10.0, help="report interval, seconds")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--leaks", default="0,5,10,20,30", help="MB/h, comma separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--control",
        type=int,
        default=MAX_COHORT,
        help="control devices at most (the hub's cap by default; fewer runs faster)",
    )
    args = parser.parse_args()
    rows = []
    started = time.monotonic()
    for leak in (float(x) for x in args.leaks.split(",")):
        outcomes: Counter[str] = Counter()
        caught = 0
        for t in range(args.trials):
            outcome, metrics = trial(
                leak,
                devices=args.devices,
                wave=args.wave,
                bake_s=args.bake,
                interval_s=args.interval,
                seed=args.seed * 1_000_003 + t + int(leak * 1000) * 7919,
                control_cap=args.control,
            )
            outcomes[outcome] += 1
            caught += metrics["module-rss-growth(web)"] == "fail"
        n = args.trials
        rows.append(
            [
                f"{leak:g} MB/h" if leak else "0 (good release)",
                n,
                f"{100 * caught / n:.1f} %" if leak else "—",
                f"{100 * outcomes['fail'] / n:.1f} %" if not leak else "—",
                f"{100 * outcomes['inconclusive'] / n:.1f} %",
                f"{100 * outcomes['pass'] / n:.1f} %",
            ]
        )
    canaries = max(1, math.ceil(args.devices * args.wave - 1e-9))
    print("## Canary analysis: detection and false alarms (`bench_canary`)\n")
    print(f"Machine: {machine()}; load {os.getloadavg()[0]:.1f}; git {git_revision()}.")
    print(
        f"Command: `bench_canary --devices {args.devices} --wave {args.wave:g} "
        f"--bake {args.bake:g} --interval {args.interval:g} --trials {args.trials} "
        f"--leaks {args.leaks} --seed {args.seed} --control {args.control}`: {canaries} "
        f"canaries against {min(args.devices - canaries, args.control)} control devices, one sample every "
        f"{args.interval:g} s over a {args.bake:g} s bake; "
        f"{time.monotonic() - started:.0f} s in all.\n"
    )
    print(
        table(
            [
                "leak of web@2.0.0",
                "trials",
                "caught in wave 1 (rss-growth fails)",
                "false alarms (wave fails)",
                "inconclusive (pauses)",
                "passed",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
