"""One node: time from `fogline apply` to healthy, and the agent's idle memory.

A real hub and agent; three signed modules (small Python HTTP servers) are
pushed. Each round applies a deployment that moves all three to a new
version and measures apply → the hub shows the node in sync with every
module healthy. Then, with the three modules running and nothing to do, the
agent's resident memory (VmRSS) is sampled; then the agent is restarted (the
three modules installed, no update since its start: a node's usual day) and
sampled again the same way. Baselines in the same run: a bare Python
interpreter, and one that only imports the libraries the issue named
(paho-mqtt, httpx, cryptography, orjson, zstandard), also without httpx's
command line (as the agent imports httpx: see fogline.cli._agent_main).
Where the memory goes: a fresh interpreter imports what the agent's process
imports, stage by stage (its import settings first, as its own program
applies them), then what it imports or builds only on first use
(a /metrics scrape, a webhook call, an update) or never, with VmRSS after
each stage.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_node --rounds 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
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


# Cumulative: each stage's figure is what it adds to the ones before it.
IMPORT_STAGES: tuple[tuple[str, str], ...] = (
    (
        # httpcore and anyio: httpx imports them when a client is made (the hub link's, at start).
        # First, as the agent's process does, its settings for what it imports (f3b1434, 238495a).
        "the agent's lean program (`fogline.cli._agent_main`, no pydantic plugin lookup, idna"
        " deferred); httpx (without its CLI) and its transport (httpcore, anyio), orjson, zstandard",
        "import sys\nsys.modules['httpx._main'] = None\n"
        "try:\n"
        "    from fogline.cli._agent_main import defer_idna, skip_pydantic_plugins\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    skip_pydantic_plugins()\n"
        "    defer_idna()\n"
        "import httpx, httpcore, anyio, orjson, zstandard",
    ),
    (
        "pydantic (one model built)",
        "import pydantic\nclass M(pydantic.BaseModel):\n    x: int\nM(x=1)",
    ),
    ("fogline.protocol (its pydantic models)", "import fogline.protocol"),
    ("h11 (the local endpoint; httpx's HTTP/1.1)", "import h11"),
    (
        "fogline.agent: the rest of what the agent's process imports",
        "from fogline.agent import Agent, AgentConfig\n"
        "from fogline.agent.dataplane import MqttSettings\n"
        "from fogline.agent.supervisor import resolve_module_user\n"
        "from fogline.security import read_token_file\n"
        "import fogline.cli._agent_main",
    ),
    ("at a host name that is not ASCII: idna's tables", "import idna.core"),
    (
        "with PYDANTIC_DISABLE_PLUGINS asking for plugins: their lookup (importlib.metadata)",
        "import importlib.metadata, zipfile, csv",
    ),
    (
        "at the first /metrics or module scrape: prometheus_client",
        "import prometheus_client, prometheus_client.parser",
    ),
    (
        "at the first webhook call: its httpx client (certifi's CA bundle)",
        "import httpx, sys\nsys.bench_kept = httpx.AsyncClient(verify=True, trust_env=False)",
    ),
    (
        "at an update (or a module file without its parsed copy): PyYAML",
        "import fogline.artifact._yaml",
    ),
    (
        "at enrollment, renewal, an update: cryptography (keys, CSRs, certificates)",
        "import fogline.security._ca, fogline.security._csr, fogline.artifact._keys",
    ),
    (
        "at an update: unpacking, signatures (fogline.artifact)",
        "import fogline.artifact._unpack, fogline.artifact._signing",
    ),
    ("at an update: python-tuf, securesystemslib", "import fogline.agent.updater._tuf_client"),
    ("never on a node: release building, SBOM (cyclonedx)", "import fogline.artifact._build"),
    (
        "never on a node: the hub's security side",
        "import fogline.security._roles, fogline.security._passwords",
    ),
    (
        "never on the agent: typer, the `fogline agent` command (before its exec)",
        "import fogline.cli\nfogline.cli._command(['agent'])",
    ),
    ("never on the agent: uvicorn (the hub's server)", "import uvicorn"),
    ("never on a node: the rest of the CLI", "import fogline.cli._app"),
)

_STAGES_PROBE = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
out = [("bare python", rss(), len(sys.modules))]
for name, code in json.loads(sys.argv[1]):
    try:
        exec(code, {})
    except (ImportError, AttributeError) as exc:  # an older revision: not there
        name = f"{name} (failed: {type(exc).__name__})"
    out.append((name, rss(), len(sys.modules)))
print(json.dumps(out))
"""


def import_stages() -> list[tuple[str, float, int]]:
    """(stage, VmRSS MB after it, modules loaded) in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _STAGES_PROBE, json.dumps(IMPORT_STAGES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [(name, mb, count) for name, mb, count in json.loads(done.stdout)]


def idle_samples(pid: int) -> list[float]:
    time.sleep(10)  # idle: three modules running, nothing to do
    samples = []
    for _ in range(5):
        samples.append(rss_mb(pid))
        time.sleep(1)
    return samples


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


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
        assert agent.proc is not None
        samples = idle_samples(agent.proc.pid)
        # A node's usual day: started with its modules installed, no update since.
        agent.stop()
        wait_until(lambda: not any(answers(p) for p in ports.values()), 30, "modules stopped")
        agent.start()
        agent.wait_enrolled()
        wait_until(lambda: all(answers(p) for p in ports.values()), 60, "modules restarted")
        assert agent.proc is not None
        restarted = idle_samples(agent.proc.pid)
        bare = baseline_rss("pass")
        libs = baseline_rss("import paho.mqtt.client, httpx, cryptography.x509, orjson, zstandard")
        libs_lean = baseline_rss(
            "import sys\nsys.modules['httpx._main'] = None\n"
            "import paho.mqtt.client, httpx, cryptography.x509, orjson, zstandard"
        )
        stages = import_stages()
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
                (
                    "agent idle RSS with 3 modules, after the rounds (median of 5)",
                    f"{median(samples):.1f} MB",
                ),
                (
                    "agent idle RSS with 3 modules, restarted: no update since start (median of 5)",
                    f"{median(restarted):.1f} MB",
                ),
                ("baseline: bare python", f"{bare:.1f} MB"),
                (
                    "baseline: python + paho, httpx, cryptography, orjson, zstandard",
                    f"{libs:.1f} MB",
                ),
                (
                    "baseline: the same, httpx without its CLI (as the agent imports httpx)",
                    f"{libs_lean:.1f} MB",
                ),
            ],
        )
    )
    print(
        f"\nIdle samples (MB): after the rounds {', '.join(f'{v:.1f}' for v in samples)}; "
        f"restarted {', '.join(f'{v:.1f}' for v in restarted)}\n"
    )
    print("Where an agent's memory goes (a fresh interpreter, cumulative imports):\n")
    rows = []
    for (name, mb, count), (_, before, count_before) in zip(stages[1:], stages, strict=False):
        rows.append((name, f"{mb:.1f} MB", f"{mb - before:+.1f} MB", f"{count - count_before:+d}"))
    print(
        table(
            ["stage", "VmRSS after", "added", "modules"],
            [(stages[0][0], f"{stages[0][1]:.1f} MB", "", str(stages[0][2])), *rows],
        )
    )
    print(
        f"\nPer round (s): {', '.join(f'{t:.2f}' for t in timings)}; p99 {percentile(timings, 99):.2f} s"
    )


if __name__ == "__main__":
    main()
