"""What one simulated node costs: RSS and CPU of `fogline sim fleet` per node.

Starts a throwaway hub (reports every 3 s), then for each N runs
`fogline sim fleet --devices N --processes 1` as its own process, waits until
every node has reported, and measures that process for a window of idle
running: RSS (VmRSS from /proc), CPU seconds (utime + stime from /proc) spent
enrolling and spent per second afterwards. The marginal RSS per node is the
slope between the two fleet sizes, which removes the interpreter's own cost.

    .venv/bin/python -m benchmarks.bench_sim_cost --sizes 100,500 --window 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, table
from fogline.sim import RehearsalError, ThrowawayHub

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def online(hub: ThrowawayHub, prefix: str) -> int:
    client = hub.client()
    try:
        rows = client.devices()
    except RehearsalError as exc:  # a busy hub may answer 5xx: ask again
        print(f"hub: {exc}", file=sys.stderr)
        return -1
    finally:
        client.close()
    return sum(1 for r in rows if r["name"].startswith(f"sim-{prefix}-") and r.get("last_seen"))


def measure(hub: ThrowawayHub, devices: int, window_s: float, work: Path) -> dict[str, float]:
    prefix = f"b{devices}"
    client = hub.client()
    try:
        claim = client.call(
            "POST", "/v1/claims", json={"labels": {}, "max_uses": devices, "expires_in_s": 3600}
        )["token"]
    finally:
        client.close()
    started = time.monotonic()
    budget_s = 120 + window_s + devices / 10
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "fogline", "sim", "fleet",
            "--hub", hub.url, "--ca", str(hub.ca),
            "--devices", str(devices), "--processes", "1", "--prefix", prefix,
            "--duration", str(budget_s), "--boot-spread", str(devices / 10), "--data-dir", str(work / prefix), "-o", "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FOGLINE_CLAIM": claim},  # never on the command line
    )  # fmt: skip
    try:
        # Wait for every node to report, but measure anyway once the boot plus
        # a minute has passed: a hub that cannot keep up must not hide the
        # simulator's own cost (the online counts say how far the hub got).
        settle_by = started + devices / 10 + 60
        while (count := online(hub, prefix)) < devices and time.monotonic() < settle_by:
            time.sleep(1.0)
        enrolled_s = time.monotonic() - started
        online_at_start = max(count, 0)
        cpu_start, hub_cpu_start = cpu_seconds(proc.pid), cpu_seconds(hub.pid or 0)
        peak_rss = 0
        window_end = time.monotonic() + window_s
        while time.monotonic() < window_end:
            peak_rss = max(peak_rss, rss_bytes(proc.pid))
            time.sleep(0.5)
        cpu_window = cpu_seconds(proc.pid) - cpu_start
        hub_cpu_window = cpu_seconds(hub.pid or 0) - hub_cpu_start
        online_at_end = max(online(hub, prefix), 0)
    finally:
        proc.terminate()  # SIGTERM: the fleet stops at once (no stats needed)
        proc.wait(timeout=60)
    return {
        "devices": devices,
        "online_at_start": online_at_start,
        "online_at_end": online_at_end,
        "enrolled_s": enrolled_s,
        "startup_cpu_s": cpu_start,
        "rss": peak_rss,
        "cpu_per_s": cpu_window / window_s,
        "hub_cpu_per_s": hub_cpu_window / window_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--window", type=float, default=20.0, help="Idle seconds measured.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="fogline-bench-sim-") as tmp:
        work = Path(tmp)
        hub = ThrowawayHub(work / "hub", report_interval_s=3.0)
        hub.start()
        try:
            results = [measure(hub, n, args.window, work) for n in sizes]
        finally:
            hub.stop()
            errors = [line for line in hub.log_tail().splitlines() if "error" in line.lower()]
            if errors:
                print("hub log errors (last):", *errors[-3:], sep="\n", file=sys.stderr)
    small, large = results[0], results[-1]
    span = large["devices"] - small["devices"]
    rss_per_node = (large["rss"] - small["rss"]) / span if span else large["rss"] / large["devices"]
    cpu_per_node = large["cpu_per_s"] / large["devices"]  # cores per idle node
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    by_memory = int(0.8 * mem_total / rss_per_node) if rss_per_node > 0 else 0
    by_cpu = int(0.8 * (os.cpu_count() or 1) / cpu_per_node) if cpu_per_node > 0 else 0
    summary = {
        "machine": machine(),
        "revision": git_revision(),
        "runs": results,
        "rss_per_node_bytes": rss_per_node,
        "cpu_cores_per_node": cpu_per_node,
        # The slope again: the interpreter's imports are paid once per process.
        "startup_cpu_s_per_node": (large["startup_cpu_s"] - small["startup_cpu_s"]) / span
        if span
        else large["startup_cpu_s"] / large["devices"],
        "nodes_per_machine_by_memory": by_memory,
        "nodes_per_machine_by_cpu": by_cpu,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['machine']}, revision {summary['revision']}, reports every 3 s\n")
    rows = [
        (
            r["devices"],
            f"{r['online_at_start']:.0f}/{r['online_at_end']:.0f}",
            f"{r['enrolled_s']:.1f}",
            f"{r['startup_cpu_s']:.1f}",
            f"{r['rss'] / 2**20:.0f}",
            f"{r['rss'] / r['devices'] / 1024:.0f}",
            f"{100 * r['cpu_per_s']:.1f}",
            f"{100 * r['hub_cpu_per_s']:.1f}",
        )
        for r in results
    ]
    headers = (
        "nodes", "online (start/end of window)", "boot wait (s)", "start-up CPU (s)", "RSS (MiB)", "RSS/node (KiB)",
        "sim CPU idle (%)", "hub CPU (%)",
    )  # fmt: skip
    print(table(headers, rows))
    print(
        f"\nmarginal RSS per node: {rss_per_node / 1024:.0f} KiB; idle CPU per node: "
        f"{100 * cpu_per_node:.3f} % of a core; start-up CPU per node: "
        f"{1000 * summary['startup_cpu_s_per_node']:.0f} ms\n"
        f"one machine like this could fake about {min(by_memory, by_cpu)} idle nodes "
        f"(memory allows {by_memory}, CPU {by_cpu}; 80 % of each, hub not included)"
    )


if __name__ == "__main__":
    main()
