"""One node: time from `fogline apply` to healthy, and the agent's idle memory.

A real hub and agent; three signed modules (small Python HTTP servers) are
pushed. Each round applies a deployment that moves all three to a new
version and measures apply → the hub shows the node in sync with every
module healthy. Then, with the three modules running and nothing to do, the
agent's resident memory (VmRSS) is sampled. Baselines in the same run: a bare
Python interpreter, and one that only imports the libraries the issue named
(paho-mqtt, httpx, cryptography, orjson, zstandard).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_node --rounds 5
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks._common import git_revision, machine, median, percentile, table
from tests.support.modules import write_module
from tests.support.processes import AgentProcess, free_port, start_hub, wait_until

MODULES = ("alpha", "beta", "gamma")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def baseline_rss(code: str) -> float:
    probe = f"{code}\nimport time, os\nprint(os.getpid(), flush=True)\ntime.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())  # type: ignore[union-attr]
        time.sleep(0.5)
        return rss_mb(pid)
    finally:
        proc.kill()
        proc.wait()


def push(hub, root: Path, key: Path, name: str, version: str, port: int) -> None:
    source = write_module(root / f"src-{name}-{version}", version, port)
    spec = source / "fogline-module.yaml"
    spec.write_text(spec.read_text().replace("name: web", f"name: {name}"))
    archive = root / f"{name}-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))


def deployment(version: str) -> str:
    modules = ", ".join(f"{{name: {m}, release: {m}@{version}}}" for m in MODULES)
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: three}}
        spec:
          selector: {{}}
          modules: [{modules}]
        """)


def all_healthy(hub, name: str, version: str) -> bool:
    device = hub.device(name)
    modules = ((device.get("reported") or {}).get("modules") or {}).get("modules") or {}
    return (device.get("sync") or {}).get("status") == "in-sync" and all(
        (modules.get(m) or {}).get("state") == "healthy"
        and (modules.get(m) or {}).get("version") == version
        for m in MODULES
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fogline-bench-node-"))
    hub = start_hub(root / "hub")
    agent = None
    try:
        keys = root / "keys"
        hub.cli(
            "apply", "-f", "-", input_text=hub.cli("keys", "create", "k", "--dir", str(keys)).stdout
        )
        ports = {m: free_port() for m in MODULES}
        versions = [f"1.0.{i}" for i in range(args.rounds)]
        for version in versions:
            for module in MODULES:
                push(hub, root, keys / "k.key", module, version, ports[module])
        agent = AgentProcess(root / "node", hub, "node", hub.create_claim())
        agent.start()
        agent.wait_enrolled()
        timings = []
        manifest = root / "three.yaml"
        for version in versions:
            manifest.write_text(deployment(version))
            started = time.monotonic()
            hub.cli("apply", "-f", str(manifest))
            wait_until(
                lambda v=version: all_healthy(hub, "node", v),
                120,
                f"{version} healthy",
                interval_s=0.05,
            )
            timings.append(time.monotonic() - started)
        time.sleep(10)  # idle: three modules running, nothing to do
        assert agent.proc is not None
        samples = []
        for _ in range(5):
            samples.append(rss_mb(agent.proc.pid))
            time.sleep(1)
        bare = baseline_rss("pass")
        libs = baseline_rss("import paho.mqtt.client, httpx, cryptography.x509, orjson, zstandard")
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## One node: apply to healthy, idle memory (git {git_revision()})\n")
    print(f"Machine: {machine()}  ")
    print(
        f"Command: `PYTHONPATH=. .venv/bin/python -m benchmarks.bench_node --rounds {args.rounds}`\n"
    )
    print(
        table(
            ["measure", "value"],
            [
                ("apply → in sync, 3 modules healthy: median", f"{median(timings):.2f} s"),
                ("apply → in sync, 3 modules healthy: max", f"{max(timings):.2f} s"),
                ("rounds", str(len(timings))),
                ("agent idle RSS with 3 modules (median of 5)", f"{median(samples):.1f} MB"),
                ("baseline: bare python", f"{bare:.1f} MB"),
                (
                    "baseline: python + paho, httpx, cryptography, orjson, zstandard",
                    f"{libs:.1f} MB",
                ),
            ],
        )
    )
    print(
        f"\nPer round (s): {', '.join(f'{t:.2f}' for t in timings)}; p99 {percentile(timings, 99):.2f} s"
    )


if __name__ == "__main__":
    main()
